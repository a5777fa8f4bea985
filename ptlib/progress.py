"""The one progress-bar helper: every long loop in ptlib goes through ``progress``.

How a bar shows depends on where the code runs (``progress_style``, the one place that
decides; ``PTLIB_PROGRESS`` forces one of ``PROGRESS_STYLES``):

- a learner's live notebook: tqdm's ipywidgets bar, updated as the loop runs;
- a terminal: tqdm's text bar on stderr, redrawn in place;
- a notebook executed headless (papermill, nbval, ``nbconvert --execute``): nothing while the
  loop runs, then one plain line at the bar's final count, e.g.
  ``train lstm seed 2: 100%|██████████| 60/60 [00:39<00:00,  1.52it/s]``. A widget bar would be
  stored at its first frame (0%), because nobody's browser ever drew the later ones.

``TQDM_DISABLE`` does not silence notebook bars, so callers pass ``disable`` explicitly.
``library_bars()`` sends the bars of transformers (e.g. "Loading weights") the same way.
"""

import contextlib
import importlib.util
import os
import sys
from collections.abc import Iterable, Iterator

from tqdm import std

from ptlib.errors import ConfigError

PROGRESS_ENV = "PTLIB_PROGRESS"
PROGRESS_STYLES = ("widget", "text", "final", "off")


def running_kernel():
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
    kernel = running_kernel()
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
            raise ConfigError(f"{PROGRESS_ENV}={forced!r}: use one of {list(PROGRESS_STYLES)}")
        return forced
    attached = frontend_attached()
    if attached is None:
        return "text"
    if not attached:
        return "final"
    return "widget" if importlib.util.find_spec("ipywidgets") is not None else "text"


class _Discard:
    """A file that swallows what tqdm writes while a final-line bar runs."""

    encoding = "utf-8"  # so tqdm draws the bar with block characters, as on a screen

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


class _EndsEarly:
    """Mixin for ptlib's bars: after ``end_early(bar)``, closing makes the total the count
    reached, so a loop stopped on purpose reads complete (tqdm's iterator only knows its final
    count when it closes)."""

    ended_early = False

    def _settle_total(self) -> None:
        if self.ended_early and self.total is not None and self.n < self.total:
            self.total = self.n

    def close(self) -> None:
        if not getattr(self, "disable", True):
            self._settle_total()
        super().close()


class TextBar(_EndsEarly, std.tqdm):
    """tqdm's text bar (a terminal)."""


class FinalLineBar(_EndsEarly, std.tqdm):
    """A tqdm bar that prints nothing while it runs and one plain line when it closes.

    Used where a notebook is executed without a person watching: the stored output is the bar
    at its final count. ``leave=False`` bars print nothing at all.
    """

    def __init__(self, *args, file=None, leave: bool = True, disable: bool = False, **kwargs):
        self._line_out = file if file is not None else sys.stdout  # the kernel's stdout now
        kwargs.pop("dynamic_ncols", None)  # no screen: tqdm's default 10-character bar
        kwargs.pop("mininterval", None)
        super().__init__(*args, file=_Discard(), leave=leave, disable=disable or not leave,
                         mininterval=float("inf"), **kwargs)

    def close(self) -> None:
        if getattr(self, "disable", True):
            return
        self._settle_total()
        self._ema_dt = lambda: None  # report the overall rate, as tqdm does on close
        line = str(self).rstrip()
        super().close()
        self._line_out.write(line + "\n")
        self._line_out.flush()


def _widget_bar() -> type:
    """tqdm's ipywidgets bar with ptlib's ``end_early`` (imported only in a live notebook)."""
    global _WIDGET_BAR
    if _WIDGET_BAR is None:
        from tqdm.notebook import tqdm as notebook_tqdm

        _WIDGET_BAR = type("WidgetBar", (_EndsEarly, notebook_tqdm),
                           {"__doc__": "tqdm's ipywidgets bar (a live notebook)."})
    return _WIDGET_BAR


_WIDGET_BAR = None


def bar_class(style: str | None = None) -> type:
    """The bar class for ``style`` (default: ``runtime.progress_style()``)."""
    style = style or progress_style()
    if style == "widget":
        return _widget_bar()
    if style == "final":
        return FinalLineBar
    return TextBar


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
             initial: int = 0, unit: str = "it", disable: bool = False, leave: bool = True):
    """Wrap ``iterable`` (or count to ``total``) in a bar; ``disable=True`` shows none.

    ``desc`` should tell runs apart (``"train lstm seed 2"``): in a stored notebook it is all
    that says which bar is which. A loop that may stop before ``total`` on purpose (a budget,
    patience) calls ``end_early(bar)`` when it does, or its stored line reads as unfinished.
    """
    style = progress_style()
    extra = {"dynamic_ncols": True} if style == "text" else {}
    return bar_class(style)(iterable, total=total, initial=initial, desc=desc, unit=unit,
                            disable=disable or style == "off", leave=leave, **extra)


def end_early(bar) -> None:
    """Mark ``bar`` as finished although its loop stops before ``total`` on purpose (a forward
    budget, patience): when it closes, its total becomes the count reached, so the stored line
    reads complete and a widget turns green, while an interrupted run stays short (a widget
    turns red). Call it just before the ``break``."""
    bar.ended_early = True


def _library_bar(factory, args: tuple, kwargs: dict):
    """transformers' tqdm hook: its bars as ptlib's, unless the user switched them off."""
    if getattr(factory, "__name__", "") == "EmptyTqdm":
        return factory(*args, **kwargs)
    style = progress_style()
    if style == "off":
        kwargs = {**kwargs, "disable": True}
    return bar_class(style)(*args, **kwargs)


@contextlib.contextmanager
def library_bars() -> Iterator[None]:
    """Inside the block, transformers' own bars (e.g. "Loading weights") follow ptlib's style.

    Wrap model loading in it: ``with library_bars(): AutoModelForCausalLM.from_pretrained(...)``.
    The previous setting is restored on exit, so importing or calling ptlib changes nothing
    of transformers' global state for the caller.
    """
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # transformers not installed: nothing to route
        yield
        return
    set_hook = getattr(hf_logging, "set_tqdm_hook", None)
    if set_hook is not None:  # transformers >= 5
        previous = set_hook(_library_bar)
        try:
            yield
        finally:
            set_hook(previous)
        return
    # Older transformers: no hook. A headless notebook would store a frozen widget, so hide it.
    silence = progress_style() in ("final", "off") and hf_logging.is_progress_bar_enabled()
    if silence:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if silence:
            hf_logging.enable_progress_bar()
