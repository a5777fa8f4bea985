"""The evidence for a set of the notes' claims, compact: one row per claim and relation.

``claim_evidence`` turns a study's verdicts (``claims.claim_verdicts``) into ``EvidenceRow``s:
the comparison, its estimate and 95% interval, seeds x facts and the ``stats.Outcome``, plus,
for a claim compared on two or more relations, a row pooled over them. Rows with no verdict
(an arm not in the study, fewer than ``stats.MIN_SEEDS`` seeds, a spread at the floor) are kept
with the reason; below ``stats.MIN_SEEDS`` seeds a row keeps its estimate but no interval.
``course_evidence`` reads the course's study (or another study config) and returns an
``EvidenceTable``, which a notebook shows as one HTML table and prints as one sentence per
claim (``claim_summaries``); ``forest_plot`` draws the rows that carry numbers
(``comparable``). ``show_evidence`` does all of it for a notebook in one call.

Pooling. ``ptlib.stats`` compares one pair of (S, F) outcome matrices; it has no notion of
relations. A pooled row puts each relation's paired matrices side by side along the facts axis,
on the seeds every relation shares: A (S, F_1 + ... + F_R) against B likewise, and compares
those as any pair (``runs.compare``). Seed i stays paired between A and B (the same seed on each
relation), the facts of every relation are facts, and the estimate is the difference over all
the pooled facts (a relation weighs by its number of facts). The interval speaks for these
relations' facts taken together, not for other relations; a pooled spread compares the sd over
seeds of each seed's mean over every pooled fact.
"""

import argparse
import html
import math
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D

from ptlib import stats
from ptlib.course.claims import (
    COURSE_STUDY,
    Claim,
    ClaimVerdict,
    claim_verdicts,
    claims_named,
    course_study,
    study_note,
)
from ptlib.course.plots import _legend_outside
from ptlib.course.runs import compare
from ptlib.course.study import Study
from ptlib.errors import ConfigError

POOLED = "pooled"  # the relation of a row pooled over every relation the claim was compared on
MAX_LINES = 60  # the most lines a notebook output of the evidence may take
NO_VERDICT = (stats.Outcome.TOO_FEW_SEEDS, stats.Outcome.NOT_COMPARED)  # numbers, no verdict
# (outcome, A won) -> what a row says about the claim's first method A, in words
WORDS = {(stats.Outcome.AHEAD, True): "ahead", (stats.Outcome.STEADIER, True): "steadier",
         (stats.Outcome.AHEAD, False): "behind", (stats.Outcome.STEADIER, False): "less steady",
         (stats.Outcome.UNDECIDED, False): "cannot tell",
         (stats.Outcome.TOO_FEW_SEEDS, False): "too few seeds",
         (stats.Outcome.NOT_COMPARED, False): "not compared (floor or ceiling)",
         (None, False): "not in the study"}
# forest_plot's colours: who won (the claim's first method A, or B), neither, or no verdict
COLOURS = {"a": ("tab:blue", "A won (the claim's first method)"), "b": ("tab:orange", "B won"),
           "undecided": ("black", "cannot tell"), "none": ("grey", "no verdict")}


@dataclass(frozen=True)
class EvidenceRow:
    """One claim on one relation (or pooled over relations): A against B, as numbers."""

    claim_id: str
    relation: str                # a relation, or POOLED
    label_a: str                 # the claim's method labels: A ...
    label_b: str                 # ... against B
    spread: bool                 # a ratio of seed sds (steadier), else a difference in mean EM
    estimate: float              # A − B in mean EM, or sd A / sd B; NaN: no comparison
    low: float                   # 95% interval on the estimate; NaN: none (below 5 seeds)
    high: float
    n_seeds: int                 # S, seeds both arms share (0: no comparison)
    n_facts: int                 # F, test facts (pooled: summed over the relations)
    outcome: stats.Outcome | None  # None: no verdict at all (an arm not in the study)
    winner: str | None           # the claim's label_a or label_b when one won
    reason: str = ""             # why there is no verdict ("" when there is one)
    pooled_over: tuple[str, ...] = ()  # the relations a pooled row pools

    @property
    def where(self) -> str:
        """The relation, or "pooled (R)" for a row pooled over R relations."""
        return f"{POOLED} ({len(self.pooled_over)})" if self.pooled_over else self.relation

    @property
    def comparison(self) -> str:
        """"A − B" for a difference in mean EM, "sd A / sd B" for a ratio of seed sds."""
        if self.spread:
            return f"sd {self.label_a} / sd {self.label_b}"
        return f"{self.label_a} − {self.label_b}"


def claim_evidence(study: Study, claim_ids: list[str] | None = None) -> list[EvidenceRow]:
    """The named claims' rows (None: every claim), claim by claim: each relation with runs
    in the study order, then the pooled row when the claim was compared on 2 or more. A
    spread at the floor or ceiling of a relation (``stats.Outcome.NOT_COMPARED``) stays out of
    the pool: its seeds agree by failing, and a pooled mean would hide that."""
    verdicts = claim_verdicts(study, claim_ids)
    rows = []
    for claim_id, claim in claims_named(claim_ids).items():
        mine = [item for item in verdicts if item.claim_id == claim_id]
        rows += [_row(item, claim) for item in mine]
        compared = tuple(item.relation for item in mine if item.verdict is not None
                         and item.verdict.outcome is not stats.Outcome.NOT_COMPARED)
        if len(compared) >= 2:
            rows.append(_row(_pooled(study, claim_id, claim, compared), claim, compared))
    return rows


def _pooled(study: Study, claim_id: str, claim: Claim, relations: tuple[str, ...]
            ) -> ClaimVerdict:
    """The claim's verdict on the relations' outcome matrices pooled along the facts axis, on
    the seeds every relation shares (module docstring)."""
    labels = [claim.label_a, claim.label_b]
    found = [study.matrices(relation, labels) for relation in relations]  # (S_r, F_r) each
    common = sorted(set.intersection(*(set(seeds) for _, seeds in found)))

    def pooled(label: str) -> np.ndarray:  # (S, F_1 + ... + F_R)
        return np.concatenate([matrices[label][[seeds.index(s) for s in common]]
                               for matrices, seeds in found], axis=1)

    try:
        verdict = compare(pooled(labels[0]), pooled(labels[1]), *labels, spread=claim.spread)
    except ConfigError as err:
        return ClaimVerdict(claim_id, POOLED, None, f"not pooled: {err}")
    return ClaimVerdict(claim_id, POOLED, verdict)


def _row(item: ClaimVerdict, claim: Claim, pooled_over: tuple[str, ...] = ()) -> EvidenceRow:
    verdict = item.verdict
    found = verdict.comparison if verdict is not None else None
    if isinstance(found, stats.SpreadRatio):
        numbers = (found.ratio, found.low, found.high, found.n_seeds, found.n_facts)
    elif isinstance(found, stats.Difference):
        numbers = (found.difference, found.low, found.high, found.n_seeds, found.n_facts)
    else:
        numbers = (math.nan, math.nan, math.nan, 0, 0)
    if verdict is not None and verdict.outcome is stats.Outcome.TOO_FEW_SEEDS:
        numbers = (numbers[0], math.nan, math.nan, *numbers[3:])  # no interval below 5 seeds
    if verdict is None:
        reason = item.missing
    else:
        reason = verdict.text if verdict.outcome in NO_VERDICT else ""
    return EvidenceRow(item.claim_id, item.relation, claim.label_a, claim.label_b,
                       claim.spread, *numbers,
                       verdict.outcome if verdict else None, verdict.winner if verdict else None,
                       reason, pooled_over)


def course_evidence(claim_ids: list[str] | None = None, config: str | Path | None = None,
                    root: str | Path | None = None) -> "EvidenceTable":
    """The evidence table of the named claims (None: every claim) from the course's study
    (``claims.course_study(root)``), or from the study config at ``config`` (relative paths:
    to the course's root). Without a study config or results here, a table with no rows whose
    heading says why."""
    study = course_study(root, config)
    heading = study_note(study)
    if study is None or not study.records:
        return EvidenceTable([], heading)
    return EvidenceTable(claim_evidence(study, claim_ids), heading)


# ---- in words: one sentence per claim ----

def _words(row: EvidenceRow) -> str:
    """What a row says about A (the claim's first label), in a few words (``WORDS``)."""
    return WORDS[row.outcome, row.winner == row.label_a]


def _numbers(row: EvidenceRow) -> str:
    """The estimate and its interval, as a table cell shows them ("" without numbers)."""
    if math.isnan(row.estimate):
        return ""
    value = f"{row.estimate:.2f}" if row.spread else f"{row.estimate:+.3f}"
    if math.isnan(row.low):
        return f"{value} (no interval from {row.n_seeds} seeds)"
    if row.spread:
        return f"{value} [{row.low:.2f}, {row.high:.2f}]"
    return f"{value} [{row.low:+.3f}, {row.high:+.3f}]"


def describe_row(row: EvidenceRow) -> str:
    """One row in a line, e.g. "ahead: lstm − free_normal +0.208 [+0.030, +0.411], 7 seeds ×
    55 facts"; a row without numbers gives its reason."""
    if math.isnan(row.estimate):
        return f"{_words(row)}: {row.reason}"
    return (f"{_words(row)}: {row.comparison} {_numbers(row)}, {row.n_seeds} seeds × "
            f"{row.n_facts} facts")


def claim_summaries(rows: list[EvidenceRow]) -> dict[str, str]:
    """Claim id -> one sentence from its rows, e.g. "lstm − free_rescaled: ahead on 1 of 5
    relations, behind on 2, cannot tell on 2; pooled over 5: +0.012 [-0.020, +0.041], cannot
    tell". The claim's own direction (ahead, steadier) is always counted, the rest when seen,
    in ``WORDS`` order."""
    out = {}
    for claim_id in dict.fromkeys(row.claim_id for row in rows):
        mine = [row for row in rows if row.claim_id == claim_id]
        relations = [row for row in mine if not row.pooled_over]
        counts = Counter(_words(row) for row in relations)
        lead = "steadier" if mine[0].spread else "ahead"
        said = [f"{lead} on {counts.pop(lead, 0)} of {len(relations)} relations"]
        said += [f"{words} on {counts[words]}" for words in WORDS.values() if counts[words]]
        out[claim_id] = f"{mine[0].comparison}: {', '.join(said)}" + "".join(
            f"; pooled over {len(row.pooled_over)}: {_numbers(row) or row.reason}, "
            f"{_words(row)}" for row in mine if row.pooled_over)
    return out


# ---- the table: HTML for a notebook, short text otherwise ----

@dataclass(repr=False)
class EvidenceTable:
    """Evidence rows as a notebook shows them: one HTML table (``_repr_html_``), one line per
    row in a box that scrolls past ``MAX_LINES`` lines; as text (``repr``), the heading and one
    sentence per claim (``claim_summaries``), never more than ``MAX_LINES`` lines."""

    rows: list[EvidenceRow]
    heading: str = ""  # a line above the table: which study, how complete

    def text(self) -> str:
        """The heading, one line per claim (``claim_summaries``) and a line on the rows."""
        summaries = [f"- {claim_id}: {sentence}"
                     for claim_id, sentence in claim_summaries(self.rows).items()]
        room = MAX_LINES - 2  # the heading and the footer take two lines
        if len(summaries) > room:
            summaries = summaries[: room - 1] + [f"... and {len(summaries) - room + 1} more"]
        footer = (f"({len(self.rows)} rows: the table shows in a notebook; pooled rows pool "
                  "every relation compared)" if self.rows else "")
        return "\n".join(line for line in [self.heading, *summaries, footer] if line)

    def __repr__(self) -> str:
        return self.text()

    def markdown(self) -> str:
        """One Markdown table row per claim (for the README): the comparison, the pooled row's
        estimate and interval (or the one relation's, when the claim was compared on one), its
        seeds x facts and outcome, and the claim's relations in words (``claim_summaries``)."""
        lines = ["| claim | comparison | estimate [95% interval] | seeds × facts | outcome "
                 "| relation by relation |", "|---|---|---|---|---|---|"]
        summaries = claim_summaries(self.rows)
        for claim_id, sentence in summaries.items():
            mine = [row for row in self.rows if row.claim_id == claim_id]
            pooled = [row for row in mine if row.pooled_over]
            compared = [row for row in mine if not math.isnan(row.estimate)]
            shown = (pooled or compared or mine)[0]
            where = f" ({shown.where})"
            relations = sentence.split(": ", 1)[1].split("; pooled")[0]
            lines.append(f"| {claim_id} | {shown.comparison} | {_numbers(shown) or '-'}{where} "
                         f"| {shown.n_seeds} × {shown.n_facts} | {_words(shown)} "
                         f"| {relations} |")
        return "\n".join([self.heading, "", *lines])

    def _repr_html_(self) -> str:
        head = ("<tr><th>claim</th><th>relation</th><th>comparison</th>"
                "<th>estimate [95% interval]</th><th>seeds × facts</th><th>outcome</th></tr>")
        groups = []
        for claim_id in dict.fromkeys(row.claim_id for row in self.rows):
            mine = [row for row in self.rows if row.claim_id == claim_id]
            cells = [_html_row(row, len(mine) if index == 0 else 0)
                     for index, row in enumerate(mine)]
            groups.append(f"<tbody>{''.join(cells)}</tbody>")
        return "\n".join([
            f"<p>{html.escape(self.heading)}</p>",
            '<div style="max-height:40em; overflow:auto">',
            '<table style="font-size:90%; white-space:nowrap">',
            f"<thead>{head}</thead>", *groups, "</table></div>"])


def _html_row(row: EvidenceRow, span: int) -> str:
    """One ``<tr>``; ``span`` > 0 puts the claim id first, spanning its ``span`` rows."""
    claim = (f'<th rowspan="{span}" style="vertical-align:top; text-align:left">'
             f"{html.escape(row.claim_id)}</th>") if span else ""
    style = ' style="font-weight:bold"' if row.pooled_over else ""
    if math.isnan(row.estimate):
        tail = f'<td colspan="3"><i>{html.escape(row.reason)}</i></td>'
    else:
        outcome = row.outcome.value if row.winner is None else f"{row.winner} {row.outcome.value}"
        tip = f' title="{html.escape(row.reason)}"' if row.reason else ""
        tail = (f"<td>{_numbers(row)}</td><td>{row.n_seeds} × {row.n_facts}</td>"
                f"<td{tip}>{html.escape(outcome)}</td>")
    return (f"<tr{style}>{claim}<td>{html.escape(row.where)}</td>"
            f"<td>{html.escape(row.comparison)}</td>{tail}</tr>")


# ---- the forest plot ----

def comparable(rows: list[EvidenceRow]) -> list[EvidenceRow]:
    """The rows that carry numbers (an estimate and its interval): what ``forest_plot``
    draws. Empty while the study has no runs of the claims' methods."""
    return [row for row in rows if not math.isnan(row.estimate)]


def forest_plot(rows: list[EvidenceRow]):
    """Each row with numbers as a horizontal line, top to bottom in row order: the estimate as
    a marker (a diamond and a bold label for a pooled row), its 95% interval as a line, and
    the no-difference line (0). Ratios of seed sds get their own panel below, on a log axis
    with the line at 1; interval ends at 0 or infinity stop at the panel's edge. Colour says
    who won: the claim's first method (blue), its second (orange), neither (black), or no
    verdict (grey: too few seeds, a spread at the floor). Rows without numbers are left out.
    Returns the Figure."""
    panels = []  # (spread, its rows): differences first, then ratios
    for spread in (False, True):
        mine = [row for row in rows if row.spread == spread and not math.isnan(row.estimate)]
        if mine:
            panels.append((spread, mine))
    if not panels:
        raise ConfigError("forest_plot: none of the rows has a comparison to draw")
    sizes = [len(mine) for _, mine in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 1.2 + 0.24 * sum(sizes)),
                             height_ratios=sizes, squeeze=False)
    for ax, (spread, mine) in zip(axes[:, 0], panels, strict=True):
        _forest_panel(ax, mine, spread)
    handles = [Line2D([], [], color=colour, marker="o", label=label)
               for colour, label in COLOURS.values()]
    _legend_outside(axes[0, 0], handles=handles, title="outcome")
    fig.suptitle("The claims' evidence: estimate and 95% interval per relation "
                 "(diamonds pool the relations)")
    fig.tight_layout()
    return fig


def _colour(row: EvidenceRow) -> str:
    if row.outcome in NO_VERDICT:
        return COLOURS["none"][0]
    if row.winner is None:
        return COLOURS["undecided"][0]
    return COLOURS["a" if row.winner == row.label_a else "b"][0]


def _forest_panel(ax, rows: list[EvidenceRow], spread: bool) -> None:
    """One panel of ``forest_plot``: rows of differences, or of ratios on a log axis."""
    ys = np.arange(len(rows))[::-1]  # (N,) the first row on top
    values = np.array([[row.low, row.estimate, row.high] for row in rows])  # (N, 3)
    if spread:
        finite = values[np.isfinite(values) & (values > 0)]
        edge = (finite.min(initial=1.0) / 1.5, finite.max(initial=1.0) * 1.5)
        values = np.clip(values, *edge)
        ax.set_xscale("log")
        ax.set_xlim(*edge)
    for y, row, (low, estimate, high) in zip(ys, rows, values, strict=True):
        colour = _colour(row)
        ax.hlines(y, low, high, color=colour, lw=1.4)
        ax.plot(estimate, y, "D" if row.pooled_over else "o", color=colour,
                markersize=7 if row.pooled_over else 4)
    ax.axvline(1.0 if spread else 0.0, color="black", linestyle="--", lw=0.8)
    for y, above, below in zip(ys[1:], rows, rows[1:], strict=False):
        if above.claim_id != below.claim_id:  # a thin rule between two claims
            ax.axhline(y + 0.5, color="0.85", lw=0.6)
    ax.set_yticks(ys, [f"{row.claim_id}: {row.where}" for row in rows], fontsize=8)
    for tick, row in zip(ax.get_yticklabels(), rows, strict=True):
        tick.set_fontweight("bold" if row.pooled_over else "normal")
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_ylabel("claim: relation")
    ax.set_xlabel("ratio of seed sds, sd A / sd B (log scale; below 1: A steadier)" if spread
                  else "difference in mean test EM, A − B (above 0: A ahead)")
    ax.set_title("Steadier: seed spread" if spread else "Ahead: mean exact match", fontsize=10)


def show_evidence(claim_ids: list[str], config: str | Path | None = None, recorder=None,
                  name: str = "evidence") -> EvidenceTable:
    """What a notebook shows for the claims it decides, in one call: each claim in words, the
    evidence table (``course_evidence``), its forest plot (saved through ``recorder``, a
    ``report.Recorder``, as ``name``) and a sentence per claim on what the plot shows
    (``claim_summaries``); or a line saying there is nothing to draw yet. Returns the table,
    whose rows the notebook may read further."""
    from IPython.display import display

    for claim_id, claim in claims_named(claim_ids).items():
        print(f"- {claim_id}: {claim.text} ({claim.label_a!r} against {claim.label_b!r})")
    table = course_evidence(claim_ids, config=config)
    display(table)
    drawn = comparable(table.rows)
    if not drawn:
        print("Nothing to draw yet: the study has no runs of these claims' methods "
              "(`make study` runs them).")
        return table
    fig = forest_plot(drawn)
    if recorder is not None:
        recorder.figure(fig, name)
    plt.show()
    print("In words:")
    for claim_id, sentence in claim_summaries(table.rows).items():
        print(f"- {claim_id}: {sentence}")
    return table


def main(argv: list[str] | None = None) -> int:
    """``python -m ptlib.course.evidence [CONFIG]``: every claim's evidence from a study
    (default: the course's), as the Markdown table the README carries."""
    parser = argparse.ArgumentParser(
        prog="python -m ptlib.course.evidence",
        description="Print every claim's evidence from a study as a Markdown table.")
    parser.add_argument("config", nargs="?", default=None,
                        help=f"study config JSON (default: the course's, {COURSE_STUDY})")
    args = parser.parse_args(argv)
    config = Path(args.config).resolve() if args.config else None
    if config is not None and not config.is_file():
        print(f"error: no study config at {args.config}", file=sys.stderr)
        return 2
    table = course_evidence(config=config, root=Path.cwd())
    if not table.rows:
        print(table.heading, file=sys.stderr)
        return 2
    print(table.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
