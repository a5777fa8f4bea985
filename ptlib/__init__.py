"""ptlib: the library behind the P-Tuning course.

From discrete prompt search (manual prompts, random search, AutoPrompt, GCG) to continuous
prompts (free vectors, P-Tuning's LSTM and an MLP reparameterisation) and deep prompts (every
layer's keys and values: P-Tuning v2, prefix tuning) on a frozen causal LM, with the reference
rows a practitioner compares them against (few-shot prompting, LoRA through PEFT). Importing
ptlib has no side effects: no seeding, no downloads, no model loading. The engine imports
nothing of the course: what only notebooks and reports need (the notebook runner, the study,
plots, widgets, exercises) lives in ``ptlib.course``, which imports the engine, never the
other way round.
"""

import importlib

from ptlib.checkpoint import load_prompt, read_prompt_file, save_prompt, save_slots
from ptlib.data import Fact, Task, list_tasks, load_task, read_facts
from ptlib.discrete import SearchConfig, SearchResult, manual_prompts, search, search_from_manual
from ptlib.encoders import build_encoder
from ptlib.errors import (
    ConfigError,
    DamagedFileError,
    DataError,
    FileError,
    ModelError,
    PTLibError,
    TemplateError,
    TrainingError,
)
from ptlib.few_shot import FewShotResult, few_shot
from ptlib.generate import generate
from ptlib.lora import LoRAConfig, LoRAResult, train_lora
from ptlib.model import LM, load_lm, tiny_lm
from ptlib.objective import Evaluation, evaluate
from ptlib.peft_adapter import export_peft_adapter, import_peft_adapter
from ptlib.template import Template, build_batch, parse_template
from ptlib.train_config import TrainConfig
from ptlib.training import TrainResult, train

__all__ = [
    "ConfigError", "DamagedFileError", "DataError", "Evaluation", "Fact", "FewShotResult",
    "FileError", "LM", "LoRAConfig", "LoRAResult", "ModelError", "PTLibError", "SearchConfig",
    "SearchResult", "Task", "Template", "TemplateError", "TrainConfig", "TrainResult",
    "TrainingError", "build_batch", "build_encoder", "evaluate", "export_peft_adapter",
    "few_shot", "generate", "import_peft_adapter", "list_tasks", "load_lm", "load_prompt",
    "load_task", "manual_prompts", "parse_template", "read_facts", "read_prompt_file",
    "save_prompt", "save_slots", "search", "search_from_manual", "tiny_lm", "train",
    "train_lora",
]

# Engine submodules imported on first attribute access (``ptlib.stats.paired_difference``),
# so that ``import ptlib`` stays light for engineers and the CLI. ``ptlib.course`` is not
# among them: it is imported by name (``import ptlib.course``).
_ON_FIRST_USE = ("analysis", "local_optimum", "stats")


def __getattr__(name: str):
    if name in _ON_FIRST_USE:
        return importlib.import_module(f"ptlib.{name}")
    raise AttributeError(f"module 'ptlib' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_ON_FIRST_USE))
