"""Compute to quality: how many forward passes each method spends to reach which dev exact
match, read from the course's study (no run of its own).

For each relation and method of the study at its defaults (the manual template chosen on dev,
AutoPrompt and GCG from that template to their plateau or their cap, free vectors at a token's
scale, the LSTM), every seed's dev curve: forward-pass equivalents spent (a backward counts
two; dev evaluations are not counted) against the best dev EM reached so far. The table gives,
per method, the mean best dev EM and test EM, the median forwards a run spent, the median
forwards to first reach the manual template's dev EM, and how the searches stopped (plateau =
patience ran out, cap = the forward budget). Writes ``bench/results/compute_to_quality.json``,
``.png`` and ``.md`` (the table for RESULTS.md).

    .venv/bin/python bench/compute_to_quality.py [studies/course_study_v2.json]
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from _common import RESULTS_DIR, write_result  # noqa: E402

from ptlib.course.study import Study  # noqa: E402
from ptlib.course.study.results import COMPUTE_COLUMNS, compute_cells  # noqa: E402
from ptlib.course.study_plots import compute_to_quality  # noqa: E402

METHODS = ("manual", "autoprompt_manual", "gcg_manual", "free_rescaled", "lstm")
STUDY = Path(__file__).resolve().parent.parent / "studies" / "course_study_v2.json"


def markdown(rows: list[dict]) -> str:
    """``Study.compute_rows`` as the Markdown table of RESULTS.md."""
    lines = ["| " + " | ".join(COMPUTE_COLUMNS) + " |", "|---" * len(COMPUTE_COLUMNS) + "|"]
    lines += ["| " + " | ".join(compute_cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", nargs="?", default=str(STUDY), help="a study config")
    args = parser.parse_args(argv)
    study = Study.load(args.study)
    rows = study.compute_rows(list(METHODS))
    curves = study.compute_curves(list(METHODS))
    table = markdown(rows)
    print(table)
    if curves:
        compute_to_quality(curves).savefig(RESULTS_DIR / "compute_to_quality.png", dpi=110,
                                           bbox_inches="tight")
    (RESULTS_DIR / "compute_to_quality.md").write_text("\n".join([
        "## Compute to quality (`bench/compute_to_quality.py`)", "",
        f"Command: `python bench/compute_to_quality.py`, read from the study "
        f"`{study.config.name}` ({len(study.records)} records): per relation and method, the "
        "mean best dev and test exact match, the median forward-pass equivalents a run spent "
        "(a backward counts two), the median spent to first reach the manual template's dev "
        "exact match, and how the searches stopped. Figure: "
        "[`results/compute_to_quality.png`](results/compute_to_quality.png).", "", table, ""]))
    write_result("compute_to_quality", {
        "command": "python bench/compute_to_quality.py", "study": study.config.name,
        "records": len(study.records), "rows": rows})
    print(json.dumps({"records": len(study.records), "relations": list(curves)}))


if __name__ == "__main__":
    main()
