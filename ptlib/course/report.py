"""What a notebook records for the course index: key figures (PNG) and key metrics (JSON).

Files go to ``$PTLIB_REPORTS`` if set (the course runner sets it), else ``reports/`` at the
course's root (``ptlib.course.paths.course_root``):
``figures/<notebook>-<name>.png`` and ``metrics/<notebook>.json``.
"""

import json
import os
from pathlib import Path

from ptlib.course.paths import course_root

REPORTS_ENV = "PTLIB_REPORTS"


def reports_dir() -> Path:
    """The folder reports are written to."""
    configured = os.environ.get(REPORTS_ENV)
    if configured:
        return Path(configured)
    return course_root() / "reports"


def figure_title(fig) -> str:
    """The figure's title: its suptitle, else its axes' titles joined (the index's caption)."""
    suptitle = fig.get_suptitle() if hasattr(fig, "get_suptitle") else ""  # matplotlib >= 3.8
    if suptitle:
        return suptitle
    return "; ".join(ax.get_title() for ax in fig.axes if ax.get_title())


class Recorder:
    """Collects one notebook's key figures and metrics; ``save()`` writes the metrics JSON."""

    def __init__(self, notebook: str):
        self.notebook = notebook
        self.metrics: dict = {}
        self.figures: list[str] = []
        self.titles: dict[str, str] = {}

    def figure(self, fig, name: str):
        """Save ``fig`` as a key figure of this notebook and return it (for display)."""
        folder = reports_dir() / "figures"
        folder.mkdir(parents=True, exist_ok=True)
        filename = f"{self.notebook}-{name}.png"
        fig.savefig(folder / filename, dpi=110, bbox_inches="tight")
        self.figures.append(filename)
        self.titles[filename] = figure_title(fig) or name
        return fig

    def record(self, **values) -> None:
        """Add key metrics (JSON-able values)."""
        self.metrics.update(values)

    def save(self) -> Path:
        """Write ``metrics/<notebook>.json`` with the metrics and figure names."""
        folder = reports_dir() / "metrics"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.notebook}.json"
        payload = {"notebook": self.notebook, "metrics": self.metrics, "figures": self.figures,
                   "figure_titles": self.titles}
        path.write_text(json.dumps(payload, indent=2, default=float))
        return path
