"""Writes that appear whole or not at all: a file or a folder is written under a temporary
name beside its target and moved onto it in one ``os.replace``, so an interruption never
leaves half a checkpoint, adapter or model cache behind.

New files get the user's umask (``tempfile.mkstemp`` would create them 0600).
"""

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a staging path beside ``path``; on a clean exit it replaces ``path``.

    ``with atomic_file(target) as staging: save_file(tensors, staging)``. On an error the
    staging file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        yield Path(staging)
        # after the write: a writer may replace the staging file (safetensors creates its own)
        os.chmod(staging, 0o666 & ~_umask())
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield a staging folder beside ``path``; on a clean exit it is renamed to ``path`` (which
    must not exist yet). On an error the staging folder is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=path.name + ".", dir=path.parent))
    os.chmod(staging, 0o777 & ~_umask())
    try:
        yield staging
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
