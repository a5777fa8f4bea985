"""The course's tasks: (x, y) facts plus manual templates, loaded by name or from a user's file.

Shipped tasks live in ``data/``: ``data/tasks.json`` indexes them (description, templates,
source) and ``data/tasks/<name>.jsonl`` holds one ``{"x": ..., "y": ...}`` object per line. A
user's own file may be JSONL with the same fields or TSV, ``x<TAB>y``. Splits are fixed by a
stable hash of the subject, so they never depend on file order.

A fact has one canonical object ``y`` (the training target) and optionally other accepted
objects, ``alternatives``, that evaluation also counts as right (exact match and first-token P@1
take the best over ``y`` and its alternatives; NLL stays on ``y``). In JSONL they are an optional
list, ``{"x": "happy", "y": "sad", "alternatives": ["unhappy"]}``; in TSV, the cells after the
second: ``happy<TAB>sad<TAB>unhappy`` (trailing empty cells, which spreadsheets write to pad
rows, are ignored).

Files as people have them: UTF-8 with or without a byte-order mark (Excel writes one), LF or
CRLF line endings, blank lines anywhere. A TSV file may start with a header row: the first
non-blank line is skipped when its first two cells are ``x``/``subject`` and ``y``/``object``
(any letter case) and any further cells are empty or ``alt``/``alternative(s)``, optionally
numbered (``alternative 1``). TSV cells are not quoted: a tab or line break cannot occur inside
one, and quote marks are kept as written. Every problem raises ``DataError`` naming the file and
line; a ``Fact`` built in code checks itself (an empty subject or target is refused).

Text read from a file is normalised to Unicode NFC, so the same subject typed with a combined
accent (NFD, as some systems write it) and a precomposed one is caught as a duplicate; the split
of a subject is decided on its NFC form too, so both forms land in the same split.
"""

import hashlib
import importlib.resources
import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ptlib.errors import DataError, TemplateError
from ptlib.template import parse_template


def _data_dir() -> Path:
    """The tasks folder: the installed ``ptlib.tasks`` package (data/ in an editable install),
    else data/ beside the package in a source checkout put on PYTHONPATH without installing
    it (as on a lent GPU machine)."""
    try:
        return Path(str(importlib.resources.files("ptlib.tasks")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "data"


DATA_DIR = _data_dir()
SPLITS = ("train", "dev", "test")
FILE_SUFFIXES = (".jsonl", ".json", ".tsv", ".txt")
SPLIT_FRACTIONS = (0.5, 0.2, 0.3)  # train, dev, test (P-Tuning's LAMA setting keeps test large)


@dataclass(frozen=True)
class Fact:
    """One subject ``x``, its canonical object ``y`` (what training targets) and any other
    objects evaluation accepts as right (``alternatives``, a tuple; empty for most facts).

    A fact checks itself: ``x`` and ``y`` must be non-empty strings, and each alternative a
    non-empty string that is neither ``y`` nor another alternative (``DataError`` otherwise).
    Facts read from files are also stripped, and a blank (whitespace-only) cell is refused there;
    a fact built in code keeps its strings as given.
    """

    x: str
    y: str
    alternatives: tuple[str, ...] = ()

    def __post_init__(self):
        for name in ("x", "y"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise DataError(f"Fact.{name} must be a string, got {type(value).__name__} "
                                f"{value!r}")
            if not value:
                what = "subject" if name == "x" else "target (object)"
                raise DataError(f"Fact.{name} is empty: a fact needs a {what}")
        alternatives = self.alternatives
        if isinstance(alternatives, str) or not isinstance(alternatives, (list, tuple)):
            raise DataError(f"Fact.alternatives must be a tuple of strings, got "
                            f"{type(alternatives).__name__} {alternatives!r}")
        problem = _alternatives_problem(alternatives, self.y)
        if problem:
            raise DataError(f"Fact({self.x!r}, {self.y!r}): {problem}")
        object.__setattr__(self, "alternatives", tuple(alternatives))

    @property
    def accepted(self) -> tuple[str, ...]:
        """Every object scored as right: ``y`` first, then the alternatives."""
        return (self.y, *self.alternatives)


def _alternatives_problem(alternatives, y: str) -> str:
    """What is wrong with a list of alternatives for object ``y``, or "" when nothing is."""
    seen = set()
    for number, alternative in enumerate(alternatives, start=1):
        if not isinstance(alternative, str):
            return (f"alternative {number} must be a string, got {type(alternative).__name__} "
                    f"{alternative!r}")
        if not alternative:
            return f"alternative {number} is empty"
        if alternative == y:
            return f"alternative {number} ({alternative!r}) repeats the object y"
        if alternative in seen:
            return f"alternative {number} ({alternative!r}) is listed twice"
        seen.add(alternative)
    return ""


@dataclass
class Task:
    """A named relation: its facts, 2-3 manual templates and a one-line description."""

    name: str
    facts: list[Fact]
    templates: list[str]
    description: str = ""
    source: str = ""
    _splits: dict = field(default_factory=dict, repr=False)

    def split(self, name: str) -> list[Fact]:
        """The facts of split ``name`` (train, dev or test), in file order."""
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}: choose one of {SPLITS}")
        if not self._splits:
            self._splits = {s: [] for s in SPLITS}
            for fact in self.facts:
                self._splits[split_of(fact.x)].append(fact)
        return self._splits[name]

    def majority_object(self) -> str:
        """The most frequent object in the train split (ties: first seen)."""
        counts = Counter(f.y for f in self.split("train"))
        return counts.most_common(1)[0][0]

    def majority_exact_match(self, split: str = "test") -> float:
        """Exact match of always answering the train split's most frequent canonical object
        (a hit where it is any accepted object of the fact)."""
        facts = self.split(split)
        majority = self.majority_object()
        return sum(majority in f.accepted for f in facts) / len(facts)


def split_of(subject: str) -> str:
    """The split a subject belongs to, from the first 8 bytes of the SHA-256 of its NFC form."""
    digest = hashlib.sha256(unicodedata.normalize("NFC", subject).encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    train, dev, _ = SPLIT_FRACTIONS
    return "train" if u < train else "dev" if u < train + dev else "test"


ALTERNATIVES = "alternatives"  # the JSONL field listing other accepted objects
# Keys that look like a misspelt ALTERNATIVES: refused rather than silently ignored.
_NEAR_ALTERNATIVES = {"alt", "alts", "alternative", "alternate", "alternates", "accepted"}
_HEADER_X, _HEADER_Y = {"x", "subject"}, {"y", "object"}
_HEADER_ALTERNATIVE = re.compile(r"(alt|alts|alternatives?)( ?\d+)?")


def _check_text(value, what: str, where: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"{where}: field {what!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise DataError(f"{where}: field {what!r} is empty")
    return unicodedata.normalize("NFC", value.strip())


def _check_alternatives(values, y: str, where: str) -> tuple[str, ...]:
    """The stripped alternatives of object ``y``, or a DataError naming ``where``."""
    if values is None:
        return ()
    if not isinstance(values, list):
        raise DataError(f"{where}: field {ALTERNATIVES!r} must be a list of strings, got "
                        f"{type(values).__name__}")
    stripped = [unicodedata.normalize("NFC", v.strip()) if isinstance(v, str) else v
                for v in values]
    problem = _alternatives_problem(stripped, y)
    if problem:
        raise DataError(f"{where}: {problem}")
    return tuple(stripped)


def _read_jsonl(path: Path, lines: list[str]) -> list[tuple[int, object, object, object]]:
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{where}: not valid JSON ({err.msg})") from err
        except RecursionError as err:
            raise DataError(f"{where}: JSON nested too deeply") from err
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected an object with fields 'x' and 'y'")
        for key in ("x", "y"):
            if key not in record:
                raise DataError(f"{where}: missing field {key!r}")
        for key in record:
            if isinstance(key, str) and key.lower() in _NEAR_ALTERNATIVES:
                raise DataError(f"{where}: unknown field {key!r}: other accepted objects go in "
                                f"{ALTERNATIVES!r}")
        rows.append((number, record["x"], record["y"], record.get(ALTERNATIVES)))
    return rows


def _is_header(cells: list[str]) -> bool:
    """Whether TSV cells are a header row: x/subject, y/object, then alternative columns."""
    names = [cell.strip().lower() for cell in cells]
    return (len(names) >= 2 and names[0] in _HEADER_X and names[1] in _HEADER_Y
            and all(not name or _HEADER_ALTERNATIVE.fullmatch(name) for name in names[2:]))


def _read_tsv(path: Path, lines: list[str]) -> list[tuple[int, object, object, object]]:
    rows, first = [], True
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        cells = line.rstrip("\r\n").split("\t")
        if first:
            first = False
            if _is_header(cells):
                continue
        if len(cells) < 2:
            raise DataError(f"{path}:{number}: expected at least 2 tab-separated columns "
                            f"(x, y, then any alternatives), got {len(cells)}")
        alternatives = cells[2:]
        while alternatives and not alternatives[-1].strip():
            alternatives.pop()  # a spreadsheet pads short rows with empty cells
        rows.append((number, cells[0], cells[1], alternatives))
    return rows


def read_facts(path: str | Path) -> list[Fact]:
    """Read and validate facts from a JSONL (``.jsonl``/``.json``) or TSV (``.tsv``/``.txt``)
    file; a UTF-8 byte-order mark and CRLF line endings are accepted, a TSV header row skipped."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        raise DataError(f"{path}: comma-separated files are not read (commas occur inside "
                        "subjects and objects); save it as tab-separated text (.tsv)")
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: drops a leading byte-order mark
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read the file ({err})") from err
    reader = _read_tsv if path.suffix.lower() in (".tsv", ".txt") else _read_jsonl
    facts, seen = [], {}
    for number, x, y, alternatives in reader(path, text.split("\n")):
        where = f"{path}:{number}"
        x, y = _check_text(x, "x", where), _check_text(y, "y", where)
        fact = Fact(x, y, _check_alternatives(alternatives, y, where))
        if fact.x in seen:
            raise DataError(f"{where}: duplicate subject {fact.x!r} (first on line {seen[fact.x]})")
        seen[fact.x] = number
        facts.append(fact)
    if not facts:
        raise DataError(f"{path}: no facts found")
    return facts


def _check_templates(templates, where: str) -> list[str]:
    if not isinstance(templates, (list, tuple)) or not templates:
        raise DataError(f"{where}: 'templates' must be a non-empty list of strings")
    for template in templates:
        try:
            parse_template(template)
        except TemplateError as err:
            raise DataError(f"{where}: {err}") from err
    return list(templates)


def _index(data_dir: Path) -> dict:
    path = data_dir / "tasks.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: cannot read the task index ({err})") from err


def list_tasks(data_dir: str | Path = DATA_DIR) -> list[str]:
    """Names of the shipped tasks, in index order."""
    return list(_index(Path(data_dir)))


def load_task(name_or_path: str | Path, templates: list[str] | None = None,
              data_dir: str | Path = DATA_DIR) -> Task:
    """Load a shipped task by name, or a user's JSONL/TSV file by path.

    A user's file needs ``templates`` (each with ``{x}``); a shipped task brings its own.
    """
    data_dir = Path(data_dir)
    candidate = Path(name_or_path)
    if candidate.suffix.lower() in FILE_SUFFIXES or len(candidate.parts) > 1:
        if templates is None:
            raise DataError(f"{candidate}: a task file needs templates, e.g. ['{{x}} is']")
        return Task(candidate.stem, read_facts(candidate),
                    _check_templates(templates, str(candidate)))
    index = _index(data_dir)
    name = str(name_or_path)
    if name not in index:
        raise DataError(f"unknown task {name!r}: choose one of {', '.join(index)} or give a path")
    entry = index[name]
    where = f"{data_dir / 'tasks.json'} [{name}]"
    return Task(
        name=name,
        facts=read_facts(data_dir / "tasks" / f"{name}.jsonl"),
        templates=_check_templates(templates or entry.get("templates"), where),
        description=entry.get("description", ""),
        source=entry.get("source", ""),
    )
