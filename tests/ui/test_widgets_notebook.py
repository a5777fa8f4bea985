"""Without a browser (runs in ``make test``): the UI notebook builds every ``interactive_*``
explorer of ``ptlib.course.widgets``, so a new widget cannot escape the browser test."""

import inspect
import json
from pathlib import Path

from ptlib.course import widgets

NOTEBOOK = Path(__file__).with_name("widgets_ui.ipynb")


def test_ui_notebook_builds_every_interactive_widget():
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    sources = "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")
    names = [name for name, obj in inspect.getmembers(widgets, inspect.isfunction)
             if name.startswith("interactive_") and obj.__module__ == widgets.__name__]
    assert names, "ptlib.course.widgets has no interactive_* explorer left to test"
    missing = [name for name in names if f"widgets.{name}(" not in sources]
    assert not missing, f"{NOTEBOOK.name} does not build {missing}: add a cell for each"
