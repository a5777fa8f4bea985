"""A study's results file and what identifies a run in it.

One JSON line per finished run. A run's identity (``run_key``) is a hash of everything that
decides its outcome: the relation and its facts, the method, the model, the template and the
resolved config, seed included. Change the config or the data and the old lines no longer
count for the new plan (they stay in the file, unread). A crash mid-write leaves at most a
partial last line: reading ignores it, and the runner cuts it off before it appends. Lines
written by older ptlib versions are read with today's key names (``ptlib.legacy``).
"""

import dataclasses
import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path

from ptlib.course.study.config import (
    FEW_SHOT,
    LORA,
    MANUAL,
    ON_MANUAL,
    SEARCHES,
    TRAINED,
    RunSpec,
    StudyConfig,
)
from ptlib.data import Fact, Task
from ptlib.errors import ConfigError, DataError
from ptlib.few_shot import SEPARATOR
from ptlib.legacy import renamed
from ptlib.train_config import TrainConfig


def facts_sha(facts: list[Fact]) -> str:
    text = "\n".join(f"{f.x}\t{f.y}\t{'|'.join(f.alternatives)}" for f in facts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def resolved_config(config: StudyConfig, spec: RunSpec, task: Task) -> dict:
    """The full config that decides the run's outcome (what its key hashes)."""
    if spec.method == MANUAL:
        return {"choose_on": "dev", "templates": list(task.templates)}
    if spec.method in FEW_SHOT:
        return {"choose_on": "dev", "templates": list(task.templates),
                "k": FEW_SHOT[spec.method], "seed": spec.seed, "separator": SEPARATOR,
                "precision": TrainConfig(**config.train).precision}
    if spec.method == LORA:
        return dataclasses.asdict(config.lora_config(spec.seed, spec.lr, spec.steps))
    if spec.method in SEARCHES:
        return config.search_config(spec.method, spec.seed, spec.steps).identity()
    encoder, init = TRAINED[spec.method]
    fields = dict(config.train, lr=spec.lr, steps=spec.steps, seed=spec.seed, encoder=encoder)
    if init is not None:
        fields["init"] = init
    return TrainConfig(**fields).identity()


def run_key(config: StudyConfig, spec: RunSpec, task: Task) -> str:
    """What identifies a run: relation, its facts, method, model, template, resolved config."""
    slots = None if spec.method in ON_MANUAL else config.template_text(spec.template)
    identity = {"relation": spec.relation, "task": facts_sha(task.facts),
                "method": spec.method, "model": config.model, "template": slots,
                "config": resolved_config(config, spec, task)}
    text = json.dumps(identity, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def read_results(path: str | Path, repair: bool = False) -> list[dict]:
    """The records of a results file, in file order ([] when it does not exist).

    A last line that is not a whole JSON record (a crash mid-write) is ignored, and with
    ``repair=True`` cut off the file so the next append starts on a clean line. A bad line
    elsewhere is corruption, not a crash, and raises ``DataError`` naming it."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    *complete, tail = data.split(b"\n")  # tail: what follows the last newline, if anything
    records, good_end = [], 0
    for number, line in enumerate(complete, start=1):
        if line.strip():
            try:
                record = renamed(json.loads(line))
                if not isinstance(record, dict) or "key" not in record:
                    raise ValueError("not a run record")
            except ValueError as err:
                if number == len(complete) and not tail.strip():
                    break  # a garbled last line: treated as the partial write it must be
                raise DataError(f"{path}, line {number}: not a run record ({err}); a crash "
                                "only ever leaves a partial LAST line") from err
            records.append(record)
        good_end += len(line) + 1
    if repair and good_end < len(data):
        with open(path, "r+b") as handle:
            handle.truncate(good_end)
    return records


def append_result(path: str | Path, record: dict) -> None:
    """Append one record as one line, flushed to disk before returning."""
    line = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
    with open(path, "ab") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


@contextmanager
def locked(path: Path):
    """Hold ``<results>.lock`` so that two runners never append to one file."""
    lock = path.with_name(path.name + ".lock")
    handle = open(lock, "w")  # noqa: SIM115 (held for the whole block)
    try:
        try:
            import fcntl
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # not POSIX: no lock, one runner at a time by convention
            pass
        except OSError as err:
            raise ConfigError(f"another study runner is writing {path} (lock {lock})") from err
        yield
    finally:
        handle.close()
        lock.unlink(missing_ok=True)


