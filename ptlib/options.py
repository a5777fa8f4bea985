"""Documented config fields: one declaration gives the default, the help text, the type and
the allowed values.

``TrainConfig`` and ``SearchConfig`` declare each field with ``option(...)``; their
``__post_init__`` calls ``check_options``, which checks every field against its annotation
strictly (a bool is not a number, a string is not a bool) and against its choices and bounds,
and the CLI builds one flag per field from the same declaration (type, help, choices), so the
three never drift apart.
"""

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterable

from ptlib.errors import ConfigError

Choices = Iterable[str] | Callable[[], Iterable[str]] | None
# The largest seed a config takes: seeds are mixed with epochs and offsets into torch's 64-bit
# generator seeds (``ptlib.training.batch_facts``), which this bound keeps from overflowing.
MAX_SEED = 2**32 - 1


def option(default, help: str, choices: Choices = None, *, minimum: float | None = None,
           above: float | None = None, maximum: float | None = None):
    """A dataclass field with its help text and, optionally, its allowed values (a string
    field's choices, or a function returning them, for registries that can grow after import)
    and bounds (``minimum``: value >= minimum; ``above``: value > above; ``maximum``: value <=
    maximum)."""
    metadata = {"help": help, "choices": choices, "minimum": minimum, "above": above,
                "maximum": maximum}
    return dataclasses.field(default=default, metadata=metadata)


def choices_of(field: dataclasses.Field) -> tuple[str, ...] | None:
    """The allowed values of a field declared with ``option``, or None for any value."""
    choices = field.metadata.get("choices")
    if choices is None:
        return None
    return tuple(choices() if callable(choices) else choices)


def unwrap_optional(hint) -> tuple[type, bool]:
    """``int | None`` -> (int, True); ``int`` -> (int, False)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return inner[0], len(inner) < len(typing.get_args(hint))
    return hint, False


def _type_problem(value, kind: type) -> str:
    """Why ``value`` is not a ``kind`` ("" when it is): bools are not numbers, and an int is
    a fine float; a float must be finite."""
    if kind is bool:
        return "" if isinstance(value, bool) else "must be true or false"
    if isinstance(value, bool):
        return f"must be {'an integer' if kind is int else 'a number'}, not a boolean"
    if kind is int:
        return "" if isinstance(value, int) else "must be an integer"
    if kind is float:
        if not isinstance(value, int | float):
            return "must be a number"
        return "" if math.isfinite(value) else "must be finite"
    if kind is str:
        return "" if isinstance(value, str) else "must be a string"
    return ""


def _bound_problem(value, field: dataclasses.Field, kind: type) -> str:
    noun = "an integer" if kind is int else "a number"
    minimum, above = field.metadata.get("minimum"), field.metadata.get("above")
    maximum = field.metadata.get("maximum")
    if maximum is not None and value > maximum:
        return f"must be {noun} <= {maximum}"
    if minimum is not None and value < minimum:
        positive = minimum == 1 and kind is int
        return "must be a positive integer" if positive else f"must be {noun} >= {minimum:g}"
    if above is not None and value <= above:
        return "must be positive" if above == 0 else f"must be {noun} > {above:g}"
    return ""


def check_options(config) -> None:
    """Raise ``ConfigError`` naming the first field of ``config`` (a dataclass declared with
    ``option``) whose value has the wrong type, is not one of its choices, or is out of bounds.
    """
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        kind, optional = unwrap_optional(hints[field.name])
        if value is None:
            if optional:
                continue
            raise ConfigError(f"{field.name} may not be None")
        problem = _type_problem(value, kind)
        if not problem:
            allowed = choices_of(field)
            if allowed is not None and value not in allowed:
                problem = f"must be one of {allowed}"
            elif kind in (int, float):
                problem = _bound_problem(value, field, kind)
        if problem:
            raise ConfigError(f"{field.name} {problem}, got {value!r}")
