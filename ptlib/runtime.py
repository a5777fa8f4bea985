"""Process-wide switches, each decided in exactly one place: fast mode, progress display and
the fast-mode defaults of a notebook's parameters.

``PTLIB_FAST=1`` puts notebooks and benchmarks in fast mode (CI): fewer steps, fewer seeds,
smaller splits. Nothing else in ptlib looks at the environment for this.

``PTLIB_PROGRESS`` forces how progress bars show (``widget``, ``text``, ``final`` or ``off``);
unset, ``progress_style()`` works it out from where the code runs (see there).

A notebook's fast-mode cell calls ``apply_fast_mode(globals(), fast, steps=12, ...)``: the fast
values replace the parameters cell's values, except for those the caller gave with
``papermill -p`` / ``python -m ptlib.course -p``, which are kept in either mode.
"""

import ast
import importlib.util
import os
import sys

FAST_ENV = "PTLIB_FAST"
PROGRESS_ENV = "PTLIB_PROGRESS"
PROGRESS_STYLES = ("widget", "text", "final", "off")
# papermill writes the values given with -p into a cell whose source starts with this comment
# (papermill.translators.translate_parameters, comment="Parameters").
INJECTED_HEADER = "# Parameters"


def fast_mode() -> bool:
    """True when ``PTLIB_FAST`` is set to a truthy value (1, true, yes, on)."""
    return os.environ.get(FAST_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def pick(full, fast):
    """Return ``fast`` in fast mode and ``full`` otherwise: ``steps = pick(300, 20)``."""
    return fast if fast_mode() else full


# ---------------------------------------------------------------------------------------------
# Where the code runs, and how progress shows there


def _kernel():
    """The running IPython kernel, or None (plain Python, a terminal IPython, a test)."""
    ipython_module = sys.modules.get("IPython")  # not imported: certainly not in a kernel
    if ipython_module is None:
        return None
    shell = ipython_module.get_ipython()
    return getattr(shell, "kernel", None) if shell is not None else None


def frontend_attached() -> bool | None:
    """Whether a person's frontend sent the code now running in this kernel.

    None outside a kernel. In a kernel, the ``allow_stdin`` flag of the current execute
    request: JupyterLab, Notebook, VS Code and Colab send True (``input()`` works there), while
    nbclient (papermill, ``nbconvert --execute``) and nbval send False, because nobody is there
    to type, or to watch a widget.
    """
    kernel = _kernel()
    if kernel is None:
        return None
    try:
        parent = kernel.get_parent("shell")
    except Exception:  # an old or unusual kernel: assume a person is watching
        return True
    content = (parent or {}).get("content") or {}
    return bool(content.get("allow_stdin", True))


def progress_style() -> str:
    """How progress bars show here, one of ``PROGRESS_STYLES``.

    - ``widget``: a live notebook (a person's frontend): tqdm's ipywidgets bar.
    - ``text``: a terminal: tqdm's text bar on stderr, redrawn in place.
    - ``final``: a notebook executed headless (papermill, nbval, nbconvert): nothing while a bar
      runs, and one plain line on stdout at its final count when it closes, so the stored
      notebook reads ``train lstm seed 2: 100%|...| 60/60``, never a frozen widget at 0%.
    - ``off``: no bars.

    ``$PTLIB_PROGRESS`` forces a style (the course runner sets ``final``); otherwise
    ``frontend_attached()`` decides, and a kernel without ipywidgets gets ``text``.
    """
    forced = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if forced:
        if forced not in PROGRESS_STYLES:
            from ptlib.errors import ConfigError

            raise ConfigError(f"{PROGRESS_ENV}={forced!r}: use one of {list(PROGRESS_STYLES)}")
        return forced
    attached = frontend_attached()
    if attached is None:
        return "text"
    if not attached:
        return "final"
    return "widget" if importlib.util.find_spec("ipywidgets") is not None else "text"


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
        kernel = _kernel()
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
        from ptlib.errors import ConfigError

        raise ConfigError(f"fast-mode value(s) for {unknown}, which are not parameters here")
    changed = fast_values(fast, given_parameters(), **values)
    namespace.update(changed)
    return changed
