"""The course's tasks: (x, y) facts plus manual templates, loaded by name or from a user's file.

Shipped tasks live in ``data/``: ``data/tasks.json`` indexes them (description, templates,
source) and ``data/tasks/<name>.jsonl`` holds one ``{"x": ..., "y": ...}`` object per line. A
user's own file may be JSONL with the same fields or TSV with two columns ``x<TAB>y``, no header.
Every problem raises ``DataError`` naming the file and line. Splits are fixed by a stable hash of
the subject, so they never depend on file order.
"""

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ptlib.errors import DataError, TemplateError
from ptlib.template import parse_template

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
SPLITS = ("train", "dev", "test")
FILE_SUFFIXES = (".jsonl", ".json", ".tsv", ".txt")
SPLIT_FRACTIONS = (0.5, 0.2, 0.3)  # train, dev, test (P-Tuning's LAMA setting keeps test large)


@dataclass(frozen=True)
class Fact:
    """One subject x and its single correct object y."""

    x: str
    y: str


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

    def majority_p_at_1(self, split: str = "test") -> float:
        """P@1 of always answering the train split's most frequent object."""
        facts = self.split(split)
        majority = self.majority_object()
        return sum(f.y == majority for f in facts) / len(facts)


def split_of(subject: str) -> str:
    """The split a subject belongs to, from the first 8 bytes of its SHA-256."""
    digest = hashlib.sha256(subject.encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    train, dev, _ = SPLIT_FRACTIONS
    return "train" if u < train else "dev" if u < train + dev else "test"


def _check_text(value, what: str, where: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"{where}: field {what!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise DataError(f"{where}: field {what!r} is empty")
    return value.strip()


def _read_jsonl(path: Path, lines: list[str]) -> list[tuple[int, object, object]]:
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
        rows.append((number, record["x"], record["y"]))
    return rows


def _read_tsv(path: Path, lines: list[str]) -> list[tuple[int, object, object]]:
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        cells = line.rstrip("\r\n").split("\t")
        if len(cells) != 2:
            raise DataError(f"{path}:{number}: expected 2 tab-separated columns, got {len(cells)}")
        rows.append((number, cells[0], cells[1]))
    return rows


def read_facts(path: str | Path) -> list[Fact]:
    """Read and validate facts from a JSONL (``.jsonl``/``.json``) or TSV (``.tsv``) file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read the file ({err})") from err
    reader = _read_tsv if path.suffix.lower() in (".tsv", ".txt") else _read_jsonl
    facts, seen = [], {}
    for number, x, y in reader(path, text.split("\n")):
        where = f"{path}:{number}"
        fact = Fact(_check_text(x, "x", where), _check_text(y, "y", where))
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
