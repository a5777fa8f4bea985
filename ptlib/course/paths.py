"""Where the course's files are: the repository root, given or found from the working folder
(never from where ptlib is installed: a wheel's ``site-packages`` holds no notebooks).
"""

import os
from pathlib import Path

from ptlib.errors import ConfigError

ROOT_ENV = "PTLIB_COURSE_ROOT"
MARKERS = ("notebooks", "studies")  # what a course checkout holds at its root


def is_course_root(folder: Path) -> bool:
    """True when ``folder`` holds the course's notebooks and studies."""
    return all((folder / marker).is_dir() for marker in MARKERS)


def course_root(root: str | Path | None = None) -> Path:
    """The course repository's root: ``root`` when given, else ``$PTLIB_COURSE_ROOT``, else
    the working folder or the nearest folder above it that holds ``notebooks/`` and
    ``studies/`` (a notebook's kernel runs in ``notebooks/``). ``ConfigError`` when none does.
    """
    given = root if root is not None else os.environ.get(ROOT_ENV)
    if given:
        folder = Path(given).expanduser().resolve()
        if not is_course_root(folder):
            raise ConfigError(f"{folder} is not the course's repository: it lacks "
                              f"{' or '.join(m + '/' for m in MARKERS)}")
        return folder
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if is_course_root(folder):
            return folder
    raise ConfigError(f"no course repository at or above {here}: the notebooks and studies "
                      "are not part of the ptlib package. Run from a clone of the course "
                      f"repository, or give its root (--root, or ${ROOT_ENV})")
