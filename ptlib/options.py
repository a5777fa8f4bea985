"""Documented config fields: one declaration gives the default, the help text and the choices.

``TrainConfig`` and ``SearchConfig`` declare each field with ``option(...)``; their
``__post_init__`` checks choices through ``check_choices``, and the CLI builds one flag per
field from the same declaration (type, help, choices), so the three never drift apart.
"""

import dataclasses
from collections.abc import Callable, Iterable

from ptlib.errors import ConfigError

Choices = Iterable[str] | Callable[[], Iterable[str]] | None


def option(default, help: str, choices: Choices = None):
    """A dataclass field with its help text and, for a string field, its allowed values (or a
    function returning them, for registries that can grow after import)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


def choices_of(field: dataclasses.Field) -> tuple[str, ...] | None:
    """The allowed values of a field declared with ``option``, or None for any value."""
    choices = field.metadata.get("choices")
    if choices is None:
        return None
    return tuple(choices() if callable(choices) else choices)


def check_choices(config) -> None:
    """Raise ``ConfigError`` naming the first field whose value is not one of its choices."""
    for field in dataclasses.fields(config):
        allowed = choices_of(field)
        value = getattr(config, field.name)
        if allowed is not None and value not in allowed:
            raise ConfigError(f"{field.name} must be one of {allowed}, got {value!r}")
