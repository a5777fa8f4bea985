"""What a notebook of the course reads about its run: fast mode and the parameters it was given.

``PTLIB_FAST=1`` puts notebooks and benchmarks in fast mode (CI): fewer steps, fewer seeds,
smaller splits. Nothing else in ptlib looks at the environment for this.

A notebook's fast-mode cell calls ``apply_fast_mode(globals(), fast, steps=12, ...)``: the fast
values replace the parameters cell's values, except for those the caller gave with
``papermill -p`` / ``python -m ptlib.course -p``, which are kept in either mode.
"""

import ast
import os

from ptlib.errors import ConfigError
from ptlib.progress import running_kernel

FAST_ENV = "PTLIB_FAST"
# papermill writes the values given with -p into a cell whose source starts with this comment
# (papermill.translators.translate_parameters, comment="Parameters").
INJECTED_HEADER = "# Parameters"


def fast_mode() -> bool:
    """True when ``PTLIB_FAST`` is set to a truthy value (1, true, yes, on)."""
    return os.environ.get(FAST_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


# ---------------------------------------------------------------------------------------------
# Fast-mode defaults that never overwrite a parameter the caller gave


def _bound(target) -> set[str]:
    """Names an assignment target rebinds (``a``, ``a, b``, ``*a``), not ``a[i]`` or ``a.x``."""
    if isinstance(target, ast.Name):
        return {target.id}
    if isinstance(target, ast.Tuple | ast.List):
        return set().union(set(), *(_bound(item) for item in target.elts))
    if isinstance(target, ast.Starred):
        return _bound(target.value)
    return set()


def assigned_names(source: str) -> set[str]:
    """Names bound at the top level of ``source`` (a parameters or injected cell, or any cell
    after them): assignments, annotated and augmented assignments, for-loop targets."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                names |= _bound(target)
        elif isinstance(node, ast.AnnAssign | ast.AugAssign | ast.For):
            names |= _bound(node.target)
    return names


def given_parameters(history: list[str] | None = None) -> set[str]:
    """Names the caller set with ``papermill -p`` in this kernel (empty when none were given).

    papermill runs the values it was given as a cell of their own, right after the notebook's
    parameters cell, headed ``# Parameters``; this reads the latest such cell from ``history``
    (default: this kernel's input history, IPython's ``In``).
    """
    if history is None:
        kernel = running_kernel()
        if kernel is None:
            return set()
        history = list(kernel.shell.user_ns.get("In", []))
    for source in reversed(history):
        if source.lstrip().startswith(INJECTED_HEADER):
            return assigned_names(source)
    return set()


def fast_values(fast: bool, given: set[str], **values) -> dict:
    """The fast-mode values to apply: all of ``values`` in fast mode, minus the names in
    ``given`` (set by the caller, so kept); nothing in full mode."""
    if not fast:
        return {}
    return {name: value for name, value in values.items() if name not in given}


def apply_fast_mode(namespace: dict, fast: bool, **values) -> dict:
    """In fast mode, set each of ``values`` in ``namespace`` (a notebook's ``globals()``) unless
    the caller gave that parameter with ``-p``; return what was changed.

    ``apply_fast_mode(globals(), fast, steps=12, eval_every=4)``: every name must already be a
    parameter in ``namespace`` (a typo is an error, not a silent new variable).
    """
    unknown = sorted(set(values) - set(namespace))
    if unknown:
        raise ConfigError(f"fast-mode value(s) for {unknown}, which are not parameters here")
    changed = fast_values(fast, given_parameters(), **values)
    namespace.update(changed)
    return changed
