"""Ctrl-C during training: the run stops at the next step boundary with its state saved.

While ``deferred_interrupt()`` is active, the first SIGINT only sets a flag, which the training
loop reads between steps: it saves a checkpoint there and raises ``TrainingInterrupted``, a
``KeyboardInterrupt`` that says where the run stopped and how to resume it. A second Ctrl-C
interrupts at once, as usual. The flag is used only in the main thread of one process, when
SIGINT has Python's default handler: elsewhere (other threads, torchrun, a host that handles
SIGINT itself) Ctrl-C interrupts at once and the last checkpoint is kept.
"""

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


class TrainingInterrupted(KeyboardInterrupt):
    """Training was stopped by Ctrl-C after ``step`` steps, its state saved to ``checkpoint``
    (None when the run had no checkpoint folder)."""

    def __init__(self, step: int, checkpoint: Path | None):
        self.step, self.checkpoint = step, checkpoint
        if checkpoint is None:
            text = (f"interrupted after step {step}; nothing was saved (no checkpoint folder: "
                    "give one, --out, to be able to resume)")
        else:
            text = (f"interrupted after step {step}; the run is saved in {checkpoint.parent}: "
                    "resume it with resume=True (the same command with --resume)")
        super().__init__(text)


@dataclass
class InterruptFlag:
    """Set by the first Ctrl-C while ``deferred_interrupt`` is active."""

    requested: bool = False


def _may_defer() -> bool:
    return (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler)


@contextlib.contextmanager
def deferred_interrupt(enabled: bool = True) -> Iterator[InterruptFlag]:
    """Yield a flag that the first Ctrl-C sets instead of raising (when ``enabled`` and this is
    the main thread with Python's default SIGINT handler); the default handler is back after
    the first Ctrl-C and on exit."""
    flag = InterruptFlag()
    if not (enabled and _may_defer()):
        yield flag
        return

    def note(signum, frame):
        flag.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C: at once

    signal.signal(signal.SIGINT, note)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
