"""Which code produced a result: the git commit of ptlib's sources, or a hash of them.

Every study record and benchmark result names its producer, so a number can be traced to the
code that made it, and a resumed benchmark reuses only runs of the same code. Both are worked
out once per process, at first use, and kept: a long run names the code it loaded, not the
edits made on disk while it ran (so a runner asks for them before its first run).
"""

import functools
import hashlib
import subprocess
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent  # the ptlib sources whose provenance is asked


@functools.cache
def ptlib_fingerprint() -> str:
    """A hash of ptlib's source files (the engine and the course tooling): any change to them
    changes it."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(str(path.relative_to(PACKAGE)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


@functools.cache
def source_commit() -> str:
    """The git commit ptlib's sources are at, with ``+dirty`` when they differ from it; for
    sources outside a git checkout (an installed wheel), ``sources-<fingerprint>``."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(PACKAGE), *args], capture_output=True,
                              text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--", ".")
    except (OSError, subprocess.CalledProcessError):
        return f"sources-{ptlib_fingerprint()}"
    return commit + ("+dirty" if dirty else "")
