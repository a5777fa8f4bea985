"""ptlib: the library behind the P-Tuning course.

From discrete prompt search (manual prompts, random search, AutoPrompt) to continuous prompts
(free vectors, P-Tuning's LSTM and an MLP reparameterisation) on a frozen causal LM. Importing
ptlib has no side effects: no seeding, no downloads, no model loading, and it loads no plotting
or widget library: the course's tooling (``ptlib.plots``, ``ptlib.widgets``, ``ptlib.report``,
``ptlib.exercises``, ...) is imported the first time it is used.
"""

import importlib

from ptlib.checkpoint import load_prompt, save_prompt
from ptlib.data import Fact, Task, list_tasks, load_task, read_facts
from ptlib.discrete import SearchConfig, SearchResult, manual_prompts, search
from ptlib.encoders import build_encoder
from ptlib.errors import (
    ConfigError,
    DataError,
    ModelError,
    PTLibError,
    TemplateError,
    TrainingError,
)
from ptlib.model import LM, load_lm, tiny_lm
from ptlib.objective import Evaluation, evaluate
from ptlib.peft_adapter import export_peft_adapter, import_peft_adapter
from ptlib.runtime import fast_mode
from ptlib.template import Template, build_batch, parse_template
from ptlib.train import TrainConfig, TrainResult, train

__all__ = [
    "LM", "ConfigError", "DataError", "Evaluation", "Fact", "ModelError", "PTLibError",
    "SearchConfig", "SearchResult", "Task", "Template", "TemplateError", "TrainConfig",
    "TrainResult", "TrainingError", "build_batch", "build_encoder", "evaluate",
    "export_peft_adapter", "fast_mode", "import_peft_adapter", "list_tasks", "load_lm",
    "load_prompt", "load_task", "manual_prompts", "parse_template", "read_facts", "save_prompt",
    "search", "tiny_lm", "train",
]

# Submodules imported on first attribute access (``ptlib.plots.search_curves``), so that
# ``import ptlib`` stays light for engineers and the CLI.
_ON_FIRST_USE = ("analysis", "course", "exercises", "local_optimum", "plots", "report", "stats",
                 "study", "sweep", "widgets")


def __getattr__(name: str):
    if name in _ON_FIRST_USE:
        return importlib.import_module(f"ptlib.{name}")
    raise AttributeError(f"module 'ptlib' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_ON_FIRST_USE))
