"""The course's tooling on top of the engine: what only notebooks and reports need.

- ``runner``: execute the notebooks with papermill, write reports and an index
  (``python -m ptlib.course``); ``report``: a notebook's key figures and metrics;
- ``notebook``: fast mode and the parameters a notebook was given;
- ``runs``: many seeds of one recipe, their tables and verdicts; ``study``: the committed,
  resumable many-seed study (``python -m ptlib.course.study``); ``claims``: the notes' claims
  the study decides; ``evidence``: their evidence compact, as one table, a sentence per claim
  and a forest plot;
- ``plots``, ``study_plots``, ``widgets``, ``exercises``: figures, explorers and self-checks
  for the notebooks;
- ``paths``: where the course's repository is (an argument, or found from the working folder).

This package imports ptlib's engine; the engine never imports it. Submodules load on first
use (``ptlib.course.plots``), so the study runner does not pull in matplotlib.
"""

import importlib

_SUBMODULES = ("claims", "evidence", "exercises", "notebook", "paths", "plots", "report", "runner",
               "runs", "study", "study_plots", "widgets")


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"ptlib.course.{name}")
    raise AttributeError(f"module 'ptlib.course' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SUBMODULES))
