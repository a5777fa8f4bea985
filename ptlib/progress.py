"""The one progress-bar helper: every long loop in ptlib goes through ``progress``.

``tqdm.auto`` shows a widget in notebooks and text in terminals. ``TQDM_DISABLE`` does not
silence notebook bars, so callers pass ``disable`` explicitly.
"""

from collections.abc import Iterable

from tqdm.auto import tqdm


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
             initial: int = 0,
             disable: bool = False, leave: bool = True):
    """Wrap ``iterable`` (or count to ``total``) in a tqdm bar; ``disable=True`` shows none."""
    return tqdm(iterable, total=total, initial=initial, desc=desc, disable=disable, leave=leave,
                dynamic_ncols=True)
