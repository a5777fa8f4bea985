"""Reading a study back: the records of its current plan, as outcome matrices and tables.

``Study.matrices`` gives the (S, F) outcome matrices of ``ptlib.stats`` for methods of one
relation on their common seeds, ``compare`` the verdict, and ``summary_table`` the relation x
method table of mean EM with intervals. A method label is a method with, optionally,
``lr=...`` and ``steps=...`` (default: the study's training settings).
"""

from pathlib import Path

import numpy as np

from ptlib import stats
from ptlib.course.runs import compare
from ptlib.course.study.config import METHODS, StudyConfig, plan
from ptlib.course.study.records import read_results, run_key
from ptlib.data import load_task
from ptlib.errors import ConfigError, DataError


def _parse_label(label: str) -> tuple[str, dict]:
    """``"free_normal lr=0.03 steps=240"`` -> ``("free_normal", {"lr": 0.03, "steps": 240})``;
    ``template=name`` picks a named slot template of the study."""
    method, *parts = label.split()
    kinds = {"lr": float, "steps": int, "template": str}
    fields = {}
    for part in parts:
        name, _, value = part.partition("=")
        if name not in kinds or not value:
            raise ConfigError(f"method label {label!r}: after the method only lr=..., "
                              "steps=... and template=... may follow")
        fields[name] = kinds[name](value)
    if method not in METHODS:
        raise ConfigError(f"method label {label!r}: unknown method {method!r}")
    return method, fields


class Study:
    """A study's config and the records of its current plan, for statistics."""

    def __init__(self, config: StudyConfig, records: list[dict]):
        self.config = config
        tasks = {name: load_task(name) for name in {s.relation for s in plan(config)}}
        keys = {run_key(config, spec, tasks[spec.relation]) for spec in plan(config)}
        self.records = [record for record in records if record["key"] in keys]
        self.stale = len(records) - len(self.records)  # lines of an older config or data

    @classmethod
    def load(cls, config: StudyConfig | str | Path) -> "Study":
        if not isinstance(config, StudyConfig):
            config = StudyConfig.from_file(config)
        return cls(config, read_results(config.results))

    def select(self, relation: str, label: str) -> list[dict]:
        """Records of ``relation`` and a method label (``"lstm"``, ``"lstm lr=0.03"``); lr and
        steps default to the study's training defaults for methods that have them."""
        method, fields = _parse_label(label)
        lr = fields.get("lr", self.config.lr)
        steps = fields.get("steps", self.config.steps)
        template = fields.get("template", "")
        chosen = []
        for record in self.records:
            if record["relation"] != relation or record["method"] != method:
                continue
            if record.get("template_name", "") != template:
                continue
            if record["lr"] is not None and not np.isclose(record["lr"], lr):
                continue
            if record["steps"] is not None and record["steps"] != steps:
                continue
            chosen.append(record)
        return sorted(chosen, key=lambda r: -1 if r["seed"] is None else r["seed"])

    def matrices(self, relation: str, labels: list[str]) -> tuple[dict[str, np.ndarray],
                                                                   list[int]]:
        """(S, F) test outcome matrices of ``labels`` on ``relation``, on the seeds every
        seeded method has (the manual baseline repeated once per seed), and those seeds."""
        chosen = {label: self.select(relation, label) for label in labels}
        empty = [label for label, records in chosen.items() if not records]
        if empty:
            raise DataError(f"study {self.config.name}: no runs of {empty} on {relation} yet")
        shas = {r["test"]["facts_sha"] for records in chosen.values() for r in records}
        if len(shas) > 1:
            raise DataError(f"{relation}: runs were scored on different test facts")
        seeded = [records for records in chosen.values() if records[0]["seed"] is not None]
        seeds = sorted(set.intersection(*(set(r["seed"] for r in records)
                                          for records in seeded))) if seeded else [0, 1]
        out = {}
        for label, records in chosen.items():
            if records[0]["seed"] is None:
                out[label] = np.tile(np.asarray(records[0]["test"]["exact"], float),
                                     (len(seeds), 1))
            else:
                by_seed = {r["seed"]: r["test"]["exact"] for r in records}
                out[label] = np.asarray([by_seed[s] for s in seeds], dtype=float)
        return out, seeds

    def compare(self, relation: str, label_a: str, label_b: str, *,
                spread: bool = False) -> stats.Verdict:
        """``runs.compare`` of two method labels on one relation, paired by seed and fact; the
        verdict's winner is one of the two labels."""
        found, _ = self.matrices(relation, [label_a, label_b])
        return compare(found[label_a], found[label_b], label_a, label_b, spread=spread)

    def dev_curves(self, relation: str, label: str) -> list[tuple[list[int], list[float]]]:
        """Each seed's dev curve of ``label`` on ``relation`` as (forward-pass equivalents
        spent, dev EM) at each evaluation, for records that carry their forwards (a backward
        counts two forwards; dev evaluations are not counted). The manual baseline is one point
        at 0 forwards."""
        curves = []
        for record in self.select(relation, label):
            curve = record["dev_curve"]
            if "forwards" in curve and isinstance(curve["forwards"], list):
                curves.append((list(curve["forwards"]), list(curve["exact_match"])))
            elif record["method"] == "manual":
                curves.append(([0], list(curve["exact_match"])))
        return curves

    def summary_rows(self, labels: list[str] | None = None) -> list[dict]:
        """One row per (relation, method label) with runs: mean test EM, its 95% interval
        (``stats.paired_difference`` against zero: seeds and facts resampled), seed sd, number
        of seeds and each seed's EM (``seed_means``, for a strip plot). ``labels`` default to
        the methods at the study's defaults."""
        relations = list(dict.fromkeys(r["relation"] for r in self.records))
        labels = labels or [m for m in METHODS if any(r["method"] == m for r in self.records)]
        rows = []
        for relation in relations:
            for label in labels:
                records = self.select(relation, label)
                if not records:
                    continue
                matrix = np.asarray([r["test"]["exact"] for r in records], dtype=float)
                seeds = len(records) if records[0]["seed"] is not None else 0
                if len(matrix) == 1:  # one row: facts alone decide the interval
                    matrix = np.tile(matrix, (2, 1))
                interval = stats.paired_difference(matrix, np.zeros_like(matrix))
                rows.append({"relation": relation, "method": label, "seeds": seeds,
                             "mean": interval.difference, "low": interval.low,
                             "high": interval.high,
                             "sd": float(matrix.mean(axis=1).std(ddof=1)) if seeds > 1
                             else 0.0, "facts": matrix.shape[1],
                             "seed_means": [float(np.mean(r["test"]["exact"])) for r in records],
                             "wall_seconds": float(np.mean([r["wall_seconds"]
                                                            for r in records]))})
        return rows

    def summary_table(self, labels: list[str] | None = None) -> str:
        """The relation x method table of mean test EM with 95% intervals, as text."""
        rows = self.summary_rows(labels)
        if not rows:
            return f"study {self.config.name}: no results yet ({self.config.results})"
        width = max(len("method"), *(len(row["method"]) for row in rows))
        lines = [f"{'relation':18s} {'method':{width}s} seeds  mean EM  95% interval   "
                 "seed sd  facts  s/run"]
        for row in rows:
            seeds = "-" if row["seeds"] == 0 else str(row["seeds"])
            lines.append(f"{row['relation']:18s} {row['method']:{width}s} {seeds:>5s}  "
                         f"{row['mean']:7.3f}  [{row['low']:.3f}, {row['high']:.3f}]  "
                         f"{row['sd']:7.3f}  {row['facts']:5d}  {row['wall_seconds']:5.0f}")
        lines.append("(seeds '-': deterministic, one run. The interval resamples seeds and "
                     "test facts; with one run, test facts only)")
        return "\n".join(lines)


# The notes' claims the course's study decides, by the notebook that discusses each:
# (claim, method label A, label B, spread). A label is a method with, optionally, lr=... and
