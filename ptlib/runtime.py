"""Process-wide switches read from the environment, each read in exactly one place.

``PTLIB_FAST=1`` puts notebooks and benchmarks in fast mode (CI): fewer steps, fewer seeds,
smaller splits. Nothing else in ptlib looks at the environment for this.
"""

import os

FAST_ENV = "PTLIB_FAST"


def fast_mode() -> bool:
    """True when ``PTLIB_FAST`` is set to a truthy value (1, true, yes, on)."""
    return os.environ.get(FAST_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def pick(full, fast):
    """Return ``fast`` in fast mode and ``full`` otherwise: ``steps = pick(300, 20)``."""
    return fast if fast_mode() else full
