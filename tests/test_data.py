"""Task data: reading and validating fact files, task loading, hash-based splits, shipped data."""

import json
import os
import random
import subprocess
import sys

import pytest

from ptlib import DataError, Fact, list_tasks, load_task, parse_template, read_facts
from ptlib.data import DATA_DIR, SPLIT_FRACTIONS, SPLITS, Task, split_of


def write(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


# --- reading fact files --------------------------------------------------------------------

def test_read_jsonl(tmp_path):
    path = write(tmp_path, "f.jsonl", '{"x": "France", "y": "Paris"}\n\n'
                                      '{"x": " Côte d\'Ivoire ", "y": "Yamoussoukro", "z": 1}\n')
    assert read_facts(path) == [Fact("France", "Paris"), Fact("Côte d'Ivoire", "Yamoussoukro")]
    # .json is read as JSONL too, and a str path works
    json_path = write(tmp_path, "f.json", '{"x": "a", "y": "b"}')
    assert read_facts(str(json_path)) == [Fact("a", "b")]


@pytest.mark.parametrize("name", ["f.tsv", "f.txt", "F.TSV"])
def test_read_tsv(tmp_path, name):
    path = write(tmp_path, name, "France\tParis\r\nSouth Korea\t Seoul \n\nPeru\tLima")
    assert read_facts(path) == [Fact("France", "Paris"), Fact("South Korea", "Seoul"),
                                Fact("Peru", "Lima")]


BAD_FILES = [
    ("missing_y.jsonl", '{"x": "a", "y": "b"}\n{"x": "c"}\n', 2, "missing field 'y'"),
    ("missing_x.jsonl", '{"y": "b"}\n', 1, "missing field 'x'"),
    ("empty_y.jsonl", '{"x": "a", "y": "   "}\n', 1, "'y' is empty"),
    ("empty_x.jsonl", '{"x": "a", "y": "b"}\n{"x": "", "y": "b"}\n', 2, "'x' is empty"),
    ("number.jsonl", '{"x": "a", "y": 3}\n', 1, "'y' must be a string"),
    ("null.jsonl", '{"x": null, "y": "b"}\n', 1, "'x' must be a string"),
    ("list.jsonl", '{"x": ["a"], "y": "b"}\n', 1, "'x' must be a string"),
    ("dup.jsonl", '{"x": "a", "y": "b"}\n{"x": "c", "y": "d"}\n{"x": "a", "y": "e"}\n', 3,
     "duplicate subject 'a' \\(first on line 1\\)"),
    ("dup_space.jsonl", '{"x": "a", "y": "b"}\n{"x": " a ", "y": "e"}\n', 2, "duplicate"),
    ("bad.jsonl", '{"x": "a", "y": "b"}\n{"x": "a", "y": \n', 2, "not valid JSON"),
    ("array.jsonl", '["a", "b"]\n', 1, "expected an object"),
    ("scalar.jsonl", '"a"\n', 1, "expected an object"),
    ("cols.tsv", "a\tb\nc\n", 2, "expected 2 tab-separated columns, got 1"),
    ("cols3.tsv", "a\tb\tc\n", 1, "got 3"),
    ("empty_cell.tsv", "a\tb\nc\t \n", 2, "'y' is empty"),
    ("dup.tsv", "a\tb\na\tc\n", 2, "duplicate"),
]


@pytest.mark.parametrize(("name", "content", "line", "message"), BAD_FILES,
                         ids=[b[0] for b in BAD_FILES])
def test_bad_fact_file_names_file_and_line(tmp_path, name, content, line, message):
    path = write(tmp_path, name, content)
    with pytest.raises(DataError, match=message) as info:
        read_facts(path)
    assert f"{path}:{line}:" in str(info.value)


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
@pytest.mark.parametrize("suffix", [".jsonl", ".tsv"])
def test_empty_file_raises(tmp_path, content, suffix):
    path = write(tmp_path, "empty" + suffix, content)
    with pytest.raises(DataError, match="no facts") as info:
        read_facts(path)
    assert str(path) in str(info.value)


def test_missing_and_unreadable_files_raise(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(DataError, match="cannot read") as info:
        read_facts(missing)
    assert str(missing) in str(info.value)
    folder = tmp_path / "folder.jsonl"
    folder.mkdir()
    with pytest.raises(DataError, match="cannot read"):
        read_facts(folder)
    latin1 = write(tmp_path, "latin1.tsv", "Bogotá\tColombia\n".encode("latin-1"))
    with pytest.raises(DataError, match="latin1.tsv"):
        read_facts(latin1)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads anything")
def test_permission_denied_raises(tmp_path):
    path = write(tmp_path, "locked.jsonl", '{"x": "a", "y": "b"}\n')
    path.chmod(0)
    with pytest.raises(DataError, match="cannot read"):
        read_facts(path)


def test_data_error_is_a_value_error(tmp_path):
    with pytest.raises(ValueError):
        read_facts(tmp_path / "nope.tsv")


# --- loading tasks -------------------------------------------------------------------------

def test_load_user_file_needs_valid_templates(tmp_path):
    path = write(tmp_path, "capitals.tsv", "France\tParis\nPeru\tLima\n")
    task = load_task(path, templates=["The capital of {x} is"])
    assert task.name == "capitals"
    assert task.facts == [Fact("France", "Paris"), Fact("Peru", "Lima")]
    assert task.templates == ["The capital of {x} is"]
    with pytest.raises(DataError, match="needs templates"):
        load_task(path)
    with pytest.raises(DataError, match="capitals.tsv") as info:
        load_task(path, templates=["The capital is"])
    assert "{x}" in str(info.value)
    with pytest.raises(DataError, match="capitals.tsv"):
        load_task(path, templates=["{x} is {y}"])
    with pytest.raises(DataError, match="non-empty list"):
        load_task(path, templates=[])


def make_data_dir(tmp_path, templates=("The capital of {x} is", "{x}'s capital is")):
    data_dir = tmp_path / "data"
    (data_dir / "tasks").mkdir(parents=True)
    index = {"capitals": {"description": "country -> capital", "templates": list(templates),
                          "source": "by hand"}}
    (data_dir / "tasks.json").write_text(json.dumps(index), encoding="utf-8")
    (data_dir / "tasks" / "capitals.jsonl").write_text(
        "".join(json.dumps({"x": f"Country {i}", "y": f"City {i % 3}"}) + "\n"
                for i in range(60)), encoding="utf-8")
    return data_dir


def test_load_task_by_name_from_a_data_dir(tmp_path):
    data_dir = make_data_dir(tmp_path)
    assert list_tasks(data_dir) == ["capitals"]
    task = load_task("capitals", data_dir=data_dir)
    assert task.name == "capitals" and len(task.facts) == 60
    assert task.description == "country -> capital" and task.source == "by hand"
    assert task.templates == ["The capital of {x} is", "{x}'s capital is"]
    override = load_task("capitals", templates=["{x} ->"], data_dir=data_dir)
    assert override.templates == ["{x} ->"]
    with pytest.raises(DataError, match="unknown task 'nope'") as info:
        load_task("nope", data_dir=data_dir)
    assert "capitals" in str(info.value)


def test_bad_templates_in_the_index_raise(tmp_path):
    data_dir = make_data_dir(tmp_path, templates=("The capital is",))
    with pytest.raises(DataError, match="capitals"):
        load_task("capitals", data_dir=data_dir)


def test_missing_or_broken_index_raises(tmp_path):
    with pytest.raises(DataError, match="tasks.json"):
        list_tasks(tmp_path)
    (tmp_path / "tasks.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match="tasks.json"):
        load_task("capitals", data_dir=tmp_path)


# --- splits --------------------------------------------------------------------------------

SUBJECTS = [f"subject number {i}" for i in range(1000)]


def test_split_proportions_on_synthetic_subjects():
    counts = {s: 0 for s in SPLITS}
    for subject in SUBJECTS:
        counts[split_of(subject)] += 1
    for split, fraction in zip(SPLITS, SPLIT_FRACTIONS, strict=True):
        assert abs(counts[split] / len(SUBJECTS) - fraction) < 0.05, counts


def test_splits_are_disjoint_cover_all_facts_and_keep_file_order(tmp_path):
    facts = [Fact(s, "y") for s in SUBJECTS[:200]]
    task = Task("t", facts, ["{x} is"])
    parts = {s: task.split(s) for s in SPLITS}
    assert sum(len(p) for p in parts.values()) == len(facts)
    names = [set(f.x for f in parts[s]) for s in SPLITS]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    assert set().union(*names) == {f.x for f in facts}
    for split in SPLITS:
        assert all(split_of(f.x) == split for f in parts[split])
        assert parts[split] == [f for f in facts if f in parts[split]]  # file order
    with pytest.raises(DataError, match="unknown split"):
        task.split("validation")


def test_splits_do_not_depend_on_file_order_or_the_process(tmp_path):
    lines = [json.dumps({"x": s, "y": "y"}) for s in SUBJECTS[:300]]
    first = write(tmp_path, "a.jsonl", "\n".join(lines))
    random.Random(0).shuffle(lines)
    shuffled = write(tmp_path, "b.jsonl", "\n".join(lines))
    a = load_task(first, templates=["{x} is"])
    b = load_task(shuffled, templates=["{x} is"])
    again = load_task(first, templates=["{x} is"])
    for split in SPLITS:
        assert {f.x for f in a.split(split)} == {f.x for f in b.split(split)}
        assert a.split(split) == again.split(split)
    # Another interpreter with another string-hash seed gives the same splits.
    code = ("import sys; from ptlib.data import split_of; "
            "print(''.join(split_of(l.rstrip('\\n'))[0] for l in sys.stdin))")
    here = "".join(split_of(s)[0] for s in SUBJECTS)
    seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    env = dict(os.environ, PYTHONHASHSEED=seed)
    out = subprocess.run([sys.executable, "-c", code], input="\n".join(SUBJECTS) + "\n",
                         capture_output=True, text=True, env=env, check=True).stdout.strip()
    assert out == here


def test_majority_baseline():
    facts = [Fact(s, "A" if i % 3 else "B") for i, s in enumerate(SUBJECTS[:90])]
    task = Task("t", facts, ["{x} is"])
    assert task.majority_object() == "A"
    test = task.split("test")
    assert task.majority_p_at_1("test") == pytest.approx(sum(f.y == "A" for f in test) / len(test))


# --- shipped data --------------------------------------------------------------------------

def shipped():
    if not (DATA_DIR / "tasks.json").is_file():
        return [pytest.param(None, marks=pytest.mark.skip(reason="data/tasks.json is absent"))]
    return list_tasks()


@pytest.mark.parametrize("name", shipped())
def test_shipped_task_loads_and_splits(name):
    task = load_task(name)
    assert task.name == name and task.description
    assert len(task.templates) >= 2
    for template in task.templates:
        assert parse_template(template).num_slots == 0  # manual prompts
    assert len({f.x for f in task.facts}) == len(task.facts)
    parts = [task.split(s) for s in SPLITS]
    assert all(parts), [len(p) for p in parts]
    assert sum(len(p) for p in parts) == len(task.facts)
    assert len({f.x for p in parts for f in p}) == len(task.facts)
    assert 0.0 <= task.majority_p_at_1("test") <= 1.0
