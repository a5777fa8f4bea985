"""Reading a study back: the records of its current plan, as outcome matrices and tables.

``Study.matrices`` gives the (S, F) outcome matrices of ``ptlib.stats`` for methods of one
relation on their common seeds, ``compare`` the verdict, and ``summary_table`` the relation x
method table of mean EM with intervals; ``cost_table`` adds what each method trains and
spends, ``length_rows`` reads prompts of several lengths L (the study's prefix templates,
``[P]`` x L before the manual template), ``lr_rows`` the methods across learning rates and
step budgets, ``collapse_counts`` how often runs collapse, ``compute_rows`` (with
``compute_table``) how much compute each method spends to reach which dev quality,
``compare_live`` sets a notebook's live run beside the study's record of the same run, and
``arms_note`` says which arms have no rows yet. A method label is a method with, optionally,
``lr=...``, ``steps=...`` (default: the study's training settings) and ``template=NAME`` (one
of the study's named templates; default: its ``template``).
"""

import dataclasses
import math
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from ptlib import stats
from ptlib.course.runs import compare
from ptlib.course.study.config import MANUAL_PLACEHOLDER, METHODS, StudyConfig, plan
from ptlib.course.study.records import read_results, run_key
from ptlib.data import load_task
from ptlib.deep_prompt import prefix_length
from ptlib.discrete import SearchResult
from ptlib.errors import ConfigError, DataError, TemplateError
from ptlib.template import INPUT, parse_template
from ptlib.training import TrainResult

MAKE_STUDY = "make study"  # the command that runs the course's (second) study, resuming


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
        self.planned = [(spec, run_key(config, spec, tasks[spec.relation]))
                        for spec in plan(config)]  # every run of the plan, with its key
        keys = {key for _, key in self.planned}
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

    def compute_rows(self, labels: list[str], relations: list[str] | None = None) -> list[dict]:
        """Compute to quality, one row per (relation, method label) with runs: ``runs``, the
        mean best dev EM and test EM, the median forward-pass equivalents a run spent
        (``dev_curves``: a backward counts two, dev evaluations are not counted), the median
        forwards at which a run first reached the manual template's dev EM on that relation
        (None when none did; ``reached``: "runs that did/runs"), and ``stopped_by``, how many
        runs stopped for each reason (a search: patience, its forward cap or its iterations).
        ``relations`` default to every relation with runs."""
        rows = []
        for relation in relations or list(dict.fromkeys(r["relation"] for r in self.records)):
            manual = self.select(relation, "manual")
            level = manual[0]["best_dev_exact_match"] if manual else math.inf
            for label in labels:
                records = self.select(relation, label)
                curves = self.dev_curves(relation, label)
                if not records or not curves:
                    continue
                reached = [f for f in (_first_reaching(curve, level) for curve in curves)
                           if f is not None]
                rows.append({
                    "relation": relation, "method": label, "runs": len(records),
                    "best_dev_em": float(np.mean([r["best_dev_exact_match"] for r in records])),
                    "test_em": float(np.mean([_test_em(r) for r in records])),
                    "median_forwards": float(np.median([max(c[0]) for c in curves])),
                    "median_forwards_to_manual": float(np.median(reached)) if reached else None,
                    "reached": f"{len(reached)}/{len(curves)}",
                    "stopped_by": dict(Counter(r["stopped_by"] for r in records
                                               if r.get("stopped_by")))})
        return rows

    def compute_curves(self, labels: list[str], relations: list[str] | None = None
                       ) -> dict[str, dict[str, list]]:
        """relation -> method label -> ``dev_curves``, for ``study_plots.compute_to_quality``;
        labels without runs on a relation are left out."""
        return {relation: {label: self.dev_curves(relation, label) for label in labels
                           if self.select(relation, label)}
                for relation in relations or list(dict.fromkeys(r["relation"]
                                                                for r in self.records))}

    def summary_rows(self, labels: list[str] | None = None) -> list[dict]:
        """One row per (relation, method label) with runs: mean test EM, its 95% interval
        (``stats.paired_difference`` against zero: seeds and facts resampled, cut to [0, 1],
        the range an exact match can take; NaN from 1 to ``stats.MIN_SEEDS`` - 1 seeds, facts
        only for a deterministic method), seed sd, number of seeds and each seed's EM
        (``seed_means``, for a strip plot), a run's median wall time (``wall_seconds``: one
        run paused or sharing the cores does not move it) and what the records say the method
        costs (``trainable_parameters``, ``train_flops``: the mean over the records that carry
        it, None when none does). ``labels`` default to the methods at the study's defaults."""
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
                low, high = ((math.nan, math.nan) if 0 < seeds < stats.MIN_SEEDS
                             else (max(0.0, interval.low), min(1.0, interval.high)))
                rows.append({"relation": relation, "method": label, "seeds": seeds,
                             "mean": interval.difference, "low": low, "high": high,
                             "sd": float(matrix.mean(axis=1).std(ddof=1)) if seeds > 1
                             else 0.0, "facts": matrix.shape[1],
                             "seed_means": [float(np.mean(r["test"]["exact"])) for r in records],
                             "wall_seconds": float(np.median([r["wall_seconds"]
                                                              for r in records])),
                             "trainable_parameters": _recorded(records, "trainable_parameters"),
                             "train_flops": _recorded(records, "train_flops")})
        return rows

    def summary_table(self, labels: list[str] | None = None) -> str:
        """The relation x method table of mean test EM with 95% intervals, as text."""
        rows = self.summary_rows(labels)
        if not rows:
            return f"study {self.config.name}: no results yet ({self.config.results})"
        return _text_table(rows, " seed sd  facts  s/run",
                           lambda row: f"{row['sd']:7.3f}  {row['facts']:5d}  "
                                       f"{row['wall_seconds']:5.0f}",
                           "(seeds '-': deterministic, one run. The interval resamples seeds "
                           "and test facts; with one run, test facts only; none from fewer "
                           "than 5 seeds. s/run: the median wall time of a run)")

    def cost_table(self, labels: list[str]) -> str:
        """The reference-rows table: per relation and method label, mean test EM with its 95%
        interval, then the trainable parameters and training FLOPs the records hold ("-" where
        none does), as text."""
        rows = self.summary_rows(labels)
        if not rows:
            return (f"study {self.config.name}: no runs yet of these {len(labels)} method "
                    f"labels ({labels[0]!r}{', ...' if len(labels) > 1 else ''})")
        return _text_table(rows, "  trainable  train FLOPs",
                           lambda row: f"{_count(row['trainable_parameters']):>11s}  "
                                       f"{_flops(row['train_flops']):>11s}",
                           "(trainable: parameters a run updates; train FLOPs: its optimizer "
                           "steps, dev evaluations not counted; '-': not recorded)")

    def prefix_templates(self) -> dict[str, int]:
        """The study's named templates that put every slot before the text (``[P]`` x L
        before the manual template), each with its L, shortest first."""
        found = {}
        for name, text in self.config.templates.items():
            try:
                found[name] = prefix_length(parse_template(
                    text.replace(MANUAL_PLACEHOLDER, INPUT)))
            except TemplateError:
                continue
        return dict(sorted(found.items(), key=lambda item: item[1]))

    def length_rows(self, methods: list[str], relations: list[str] | None = None
                    ) -> list[dict]:
        """``summary_rows`` of each method on each prefix template (``prefix_templates``),
        one row per (relation, method, L) with runs, each also holding ``label`` (what
        ``select`` read), ``method`` (the plain method), ``template`` and ``length`` (L).
        ``relations`` default to every relation with runs."""
        lengths = self.prefix_templates()
        labels = {f"{method} template={name}": (method, name, length)
                  for method in methods for name, length in lengths.items()}
        rows = []
        for row in self.summary_rows(list(labels)):
            if relations is not None and row["relation"] not in relations:
                continue
            method, name, length = labels[row["method"]]
            rows.append(row | {"label": row["method"], "method": method, "template": name,
                               "length": length})
        return rows

    def lr_rows(self, methods: list[str], relations: list[str] | None = None) -> list[dict]:
        """``summary_rows`` of each method at every (learning rate, steps) the plan trains it
        at on the study's template: one row per (relation, method, lr, steps) with runs, each
        also holding ``label`` (what ``select`` read), ``method`` (the plain method), ``lr``,
        ``steps`` and ``final_norms`` (per seed, the mean L2 norm of the prompt vectors at the
        run's last evaluation; None for a record that did not keep it). ``relations`` default
        to every relation with runs."""
        settings = sorted({(spec.lr, spec.steps) for spec, _ in self.planned
                           if spec.method in methods and spec.lr is not None
                           and spec.template == ""})
        labels = {f"{method} lr={lr:g} steps={steps}": (method, lr, steps)
                  for method in methods for lr, steps in settings}
        rows = []
        for row in self.summary_rows(list(labels)):
            if relations is not None and row["relation"] not in relations:
                continue
            method, lr, steps = labels[row["method"]]
            norms = [record.get("dev_curve", {}).get("prompt_norm", [None])[-1]
                     for record in self.select(row["relation"], row["method"])]
            rows.append(row | {"label": row["method"], "method": method, "lr": lr,
                               "steps": steps, "final_norms": norms})
        if relations is not None:  # in the order asked for
            rows.sort(key=lambda row: relations.index(row["relation"]))
        return rows

    def collapse_counts(self, labels: list[str], reference: list[str],
                        fraction: float = 0.5, relations: list[str] | None = None
                        ) -> dict[str, tuple[int, int]]:
        """How often each method label collapses: a run collapses when its test EM is below
        ``fraction`` x the best mean test EM of the ``reference`` labels on its relation (for
        the course: half the best free-vector mean at the study's defaults). Counted over
        ``relations`` (default: every relation of the study) where some reference label has
        runs: label -> (collapsed runs, runs)."""
        counts = {label: [0, 0] for label in labels}
        relations = relations or dict.fromkeys(record["relation"] for record in self.records)
        for relation in relations:
            means = [np.mean([_test_em(r) for r in runs])
                     for runs in (self.select(relation, label) for label in reference) if runs]
            if not means:
                continue
            floor = fraction * max(means)
            for label in labels:
                scores = [_test_em(r) for r in self.select(relation, label)]
                counts[label][0] += sum(bool(score < floor) for score in scores)
                counts[label][1] += len(scores)
        return {label: (collapsed, runs) for label, (collapsed, runs) in counts.items()}

    def same_run(self, relation: str, result: TrainResult | SearchResult) -> dict | None:
        """The study's record of the run a live ``train`` or ``search`` repeats: the same
        relation and template text, and for training the precision each resolved and every
        other field of ``result.config`` that the record's config holds equal; for a search,
        the same config. None when the study has no such run."""
        for record in self.records:
            if (record["relation"], record.get("template")) != (relation, result.template):
                continue
            if _same_config(record, result):
                return record
        return None

    def compare_live(self, relation: str, result: TrainResult | SearchResult,
                     test_exact: list[bool]) -> str:
        """One line on a live run (its ``TrainResult`` or ``SearchResult`` and per-fact test
        outcomes) against the study's record of the same run (``same_run``): both test EMs,
        how many test facts differ, and when some do, what differs between the two runs'
        machines (precision, torch threads) or else that the commit or the CPU does."""
        config = result.config
        if isinstance(result, SearchResult):
            label = f"{config.method} search"
        else:
            label = f"{config.encoder}{f' ({config.init})' if config.encoder == 'free' else ''}"
        live = f"{label}, seed {config.seed}: live test EM {np.mean(test_exact):.3f}"
        record = self.same_run(relation, result)
        if record is None:
            return f"{live}; the study has no run of this config"
        theirs = [bool(hit) for hit in record["test"]["exact"]]
        if len(theirs) != len(test_exact):
            return f"{live}; the study's row was scored on {len(theirs)} test facts, not these"
        differ = sum(a != bool(b) for a, b in zip(theirs, test_exact, strict=True))
        study = f"study {np.mean(theirs):.3f} (commit {str(record.get('commit'))[:7]})"
        if not differ:
            return f"{live} = {study}: the same outcome on all {len(theirs)} facts"
        machine = record.get("machine", {})
        causes = [f"{what} {there} there, {here} here" for what, there, here in (
            ("precision", record.get("precision"), _precision(result)),
            ("torch threads", machine.get("torch_threads"), torch.get_num_threads()))
            if there is not None and there != here]
        return (f"{live}, {study}: {differ} of {len(theirs)} facts differ ("
                f"{'; '.join(causes) or 'same precision and threads: another commit or CPU'})")

    def arm_progress(self) -> dict[str, tuple[int, int]]:
        """Each arm's (runs recorded, runs planned); a run two arms share counts in both."""
        done = {record["key"] for record in self.records}
        progress = {arm["name"]: [0, 0] for arm in self.config.arms}
        for spec, key in self.planned:
            for arm in spec.arms:
                progress[arm][0] += key in done
                progress[arm][1] += 1
        return {arm: (recorded, planned) for arm, (recorded, planned) in progress.items()}

    def arms_note(self, arms: list[str]) -> str:
        """One line on the named arms: those with no rows yet and those partly run, with the
        command that runs them; or that every run of them is recorded. ``ConfigError`` for
        an arm the study does not have."""
        progress = self.arm_progress()
        unknown = [arm for arm in arms if arm not in progress]
        if unknown:
            raise ConfigError(f"study {self.config.name} has no arms {unknown}; its arms are "
                              f"{list(progress)}")
        empty = [arm for arm in arms if progress[arm][0] == 0]
        partial = [f"{arm} {progress[arm][0]} of {progress[arm][1]}" for arm in arms
                   if 0 < progress[arm][0] < progress[arm][1]]
        if not empty and not partial:
            return (f"Every run of the arms {', '.join(arms)} of {self.config.name} is "
                    "recorded.")
        said = []
        if empty:
            said.append(f"no rows yet for the arms {', '.join(empty)}")
        if partial:
            said.append(f"runs recorded so far: {', '.join(partial)}")
        only = ",".join(empty + [arm for arm in arms if 0 < progress[arm][0] < progress[arm][1]])
        return (f"Study {self.config.name}: {'; '.join(said)}. `{MAKE_STUDY}` runs them, "
                f"resuming where it stopped (`{MAKE_STUDY} STUDY=\"--only arm={only}\"` for "
                "these arms alone).")


def _text_table(rows: list[dict], extra_header: str, extra_cells, footnote: str) -> str:
    """Rows of ``Study.summary_rows`` as a text table: relation, method, seeds, mean EM and
    its 95% interval, then ``extra_cells(row)`` under ``extra_header``, then ``footnote``."""
    width = max(len("method"), *(len(row["method"]) for row in rows))
    lines = [f"{'relation':18s} {'method':{width}s} seeds  mean EM  95% interval  "
             + extra_header]
    for row in rows:
        seeds = "-" if row["seeds"] == 0 else str(row["seeds"])
        interval = ("    (< 5 seeds)" if math.isnan(row["low"])
                    else f"[{row['low']:.3f}, {row['high']:.3f}]")
        lines.append(f"{row['relation']:18s} {row['method']:{width}s} {seeds:>5s}  "
                     f"{row['mean']:7.3f}  {interval}  " + extra_cells(row))
    return "\n".join([*lines, footnote])


COMPUTE_COLUMNS = ("relation", "method", "runs", "best dev EM", "test EM", "median forwards",
                   "to manual's dev EM (runs)", "stopped by")  # compute_cells, in order


def compute_cells(row: dict) -> list[str]:
    """One ``Study.compute_rows`` row as the text of its ``COMPUTE_COLUMNS`` cells."""
    to_manual = row["median_forwards_to_manual"]
    stopped = ", ".join(f"{why} {count}" for why, count in row["stopped_by"].items())
    return [row["relation"], row["method"], str(row["runs"]), f"{row['best_dev_em']:.3f}",
            f"{row['test_em']:.3f}", f"{row['median_forwards']:,.0f}",
            f"{'-' if to_manual is None else f'{to_manual:,.0f}'} ({row['reached']})",
            stopped or "-"]


def compute_table(rows: list[dict]) -> str:
    """``Study.compute_rows`` as a text table, one line per (relation, method), columns
    aligned."""
    cells = [list(COMPUTE_COLUMNS)] + [compute_cells(row) for row in rows]
    widths = [max(len(line[column]) for line in cells) for column in range(len(COMPUTE_COLUMNS))]
    lines = ["  ".join(text.ljust(width) if column < 2 else text.rjust(width)
                       for column, (text, width) in enumerate(zip(line, widths, strict=True)))
             for line in cells]
    return "\n".join([*lines, "(forwards: forward-pass equivalents, a backward counts two, dev "
                       "evaluations not counted; medians over runs)"])


def _precision(result: TrainResult | SearchResult) -> str:
    """The precision a live run ran at, "auto" resolved."""
    return result.config.precision if isinstance(result, SearchResult) else result.precision


def _same_config(record: dict, result: TrainResult | SearchResult) -> bool:
    """Whether ``record`` is the run ``result`` repeats (its relation and template aside)."""
    saved = record.get("config") or {}
    if record.get("precision") != _precision(result):  # each as its run resolved "auto"
        return False
    if isinstance(result, SearchResult):
        live = result.config.identity()
        return {"method", "seed"} <= saved.keys() and all(
            saved.get(name) == value for name, value in live.items() if name != "precision")
    live = dataclasses.asdict(result.config)
    return ({"encoder", "seed", "steps", "lr"} <= saved.keys()  # a training run's config
            and all(live[name] == value for name, value in saved.items()
                    if name in live and name != "precision"))


def _first_reaching(curve: tuple[list[int], list[float]], level: float) -> int | None:
    """Forwards at a curve's first evaluation whose dev EM reaches ``level`` (None: none)."""
    return next((f for f, value in zip(*curve, strict=True) if value >= level), None)


def _test_em(record: dict) -> float:
    """A run's test EM: the mean of its per-fact outcomes."""
    return float(np.mean(record["test"]["exact"]))


def _recorded(records: list[dict], field: str) -> float | None:
    """The mean of ``field`` over the records that carry it; None when none does."""
    values = [record[field] for record in records if record.get(field) is not None]
    return float(np.mean(values)) if values else None


def _count(value: float | None) -> str:
    """A parameter count with thousands separators, or "-"."""
    return "-" if value is None else f"{round(value):,}"


def _flops(value: float | None) -> str:
    """FLOPs in scientific notation (``1.2e+15``), or "-"."""
    return "-" if value is None else f"{value:.2g}"
