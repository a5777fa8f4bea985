"""Does a training run end where its seed sends it, or where rounding takes it?

Two runs with the same seed, batches and config can still differ in one thing on a CPU: how
many threads share each sum, which changes the order floating-point numbers are added in. The
maths is the same; only the rounding differs. If a method's test exact match moves as much
between 1 and 2 threads as between seeds, its spread over seeds is mostly the amplification of
rounding, not the init that the seed draws.

One unit = (relation, method, seed): the course study's recipe (``studies/course_study_v2.json``:
``[P][P][P] {x} [P][P][P]``, 60 steps, batch 8, lr 3e-3, evaluation every 10 steps, fp32) run at
1 thread and at 2, each best-on-dev prompt scored on test. Units are appended to
``bench/results/rounding_sensitivity.jsonl`` as they finish; a rerun skips the ones there.

    python bench/rounding_sensitivity.py run                 # capital_of, seeds 0-4
    python bench/rounding_sensitivity.py summary

The summary gives, per method: the mean over seeds of |EM(1 thread) - EM(2 threads)|, the
fraction of test facts whose outcome flips, the prompts' relative distance, and beside them the
spread of EM over seeds at 2 threads (the study's setting: its rows name ``torch_threads``).
"""

import argparse
import json
import statistics
import time

import _common  # offline switches before torch and transformers load
import torch

import ptlib
from ptlib.course.study import StudyConfig
from ptlib.course.study.config import TRAINED

STUDY = _common.BENCH_DIR.parent / "studies" / "course_study_v2.json"
RESULTS = _common.RESULTS_DIR / "rounding_sensitivity.jsonl"
METHODS = ("free_rescaled", "lstm", "mlp")
THREADS = (1, 2)


def train_config(study: StudyConfig, method: str, seed: int) -> ptlib.TrainConfig:
    """The study's training run of ``method`` at ``seed``."""
    encoder, init = TRAINED[method]
    fields = dict(study.train, encoder=encoder, seed=seed)
    return ptlib.TrainConfig(**fields | ({"init": init} if init else {}))


def one_run(lm, study: StudyConfig, task, method: str, seed: int, threads: int) -> dict:
    """Train at ``threads`` intra-op threads; the test outcome and the best prompt (L, d)."""
    torch.set_num_threads(threads)
    started = time.perf_counter()
    result = ptlib.train(lm, study.template, task.split("train"), task.split("dev"),
                         train_config(study, method, seed), show_progress=False)
    test = result.evaluate(lm, task.split("test"))
    return {"threads": threads, "test_exact_match": test.exact_match,
            "exact": [int(hit) for hit in test.exact], "best_step": result.best_step,
            "final_loss": result.history.loss[-1], "seconds": time.perf_counter() - started,
            "prompt": result.prompt}


def unit(lm, study: StudyConfig, task, method: str, seed: int) -> dict:
    """Both thread counts of one (relation, method, seed) and how far apart they ended."""
    runs = [one_run(lm, study, task, method, seed, threads) for threads in THREADS]
    one, two = (run.pop("prompt") for run in runs)
    distance = float((one - two).norm() / two.norm())
    flips = sum(a != b for a, b in zip(runs[0]["exact"], runs[1]["exact"], strict=True))
    return {"relation": task.name, "method": method, "seed": seed, "runs": runs,
            "prompt_relative_distance": distance, "flipped_facts": flips,
            "facts": len(runs[0]["exact"]), "commit": _common.ptlib_fingerprint(),
            "machine": _common.machine_info()}


def done_units() -> set[tuple]:
    if not RESULTS.exists():
        return set()
    return {(u["relation"], u["method"], u["seed"])
            for u in map(json.loads, RESULTS.read_text().splitlines())}


def run(relation: str, seeds: list[int]) -> None:
    _common.ptlib_fingerprint()  # of the code loaded now, before any unit (kept per process)
    study = StudyConfig.from_file(STUDY)
    task, lm, done = ptlib.load_task(relation), None, done_units()
    for seed in seeds:
        for method in METHODS:
            if (relation, method, seed) in done:
                continue
            lm = lm or ptlib.load_lm(study.model)
            record = unit(lm, study, task, method, seed)
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            with RESULTS.open("a") as out:
                out.write(json.dumps(record) + "\n")
            ems = [r["test_exact_match"] for r in record["runs"]]
            print(f"{relation} {method} seed {seed}: EM {ems[0]:.3f} (1 thread) vs "
                  f"{ems[1]:.3f} (2), {record['flipped_facts']}/{record['facts']} facts "
                  f"flipped, prompts {record['prompt_relative_distance']:.3f} apart",
                  flush=True)


def summary_lines(units: list[dict]) -> list[str]:
    """The Markdown summary of the recorded units: one row per method."""
    lines = ["| method | seeds | mean abs(EM 1 thread - EM 2 threads) | facts flipped | "
             "prompt relative distance | sd of EM over seeds (2 threads) | EM per seed, 1 thread "
             "/ 2 threads |", "|---|---|---|---|---|---|---|"]
    for method in METHODS:
        mine = sorted((u for u in units if u["method"] == method), key=lambda u: u["seed"])
        if not mine:
            continue
        ems = [[r["test_exact_match"] for r in u["runs"]] for u in mine]
        gaps = [abs(one - two) for one, two in ems]
        flipped = sum(u["flipped_facts"] for u in mine) / sum(u["facts"] for u in mine)
        distance = statistics.mean(u["prompt_relative_distance"] for u in mine)
        at_two = [two for _, two in ems]
        spread = statistics.stdev(at_two) if len(at_two) > 1 else float("nan")
        pairs = ", ".join(f"{one:.2f}/{two:.2f}" for one, two in ems)
        lines.append(f"| {method} | {len(mine)} | {statistics.mean(gaps):.3f} | "
                     f"{flipped:.1%} | {distance:.3f} | {spread:.3f} | {pairs} |")
    return lines


def study_agreement(units: list[dict]) -> str:
    """How many 2-thread runs the study has a row for (same relation, method, seed, recipe),
    and in how many the per-fact test outcomes are identical to that row's."""
    study = StudyConfig.from_file(STUDY)
    rows = {(r["relation"], r["method"], r["seed"]): r for r in
            map(json.loads, study.results.read_text().splitlines())
            if r["template_name"] == "" and r.get("lr") == study.lr
            and r.get("steps") == study.steps}
    matched = [(u, rows[key]) for u in units
               if (key := (u["relation"], u["method"], u["seed"])) in rows]
    same = sum(u["runs"][1]["exact"] == row["test"]["exact"] for u, row in matched)
    return (f"Of the {len(matched)} units whose 2-thread run the study "
            f"(`{STUDY.name}`, 2 threads) also has, {same} give the study row's per-fact test "
            "outcomes exactly.")


def summary() -> None:
    """Print the summary and write it to ``bench/results/rounding_sensitivity.md``."""
    units = [json.loads(line) for line in RESULTS.read_text().splitlines()]
    relations = sorted({u["relation"] for u in units})
    commits = sorted({u["commit"] for u in units})
    text = "\n".join([
        "## Rounding against seeds (`bench/rounding_sensitivity.py`)", "",
        f"Command: `python bench/rounding_sensitivity.py run` then `... summary`. The course "
        f"study's recipe on {', '.join(relations)}, each seed trained at 1 and at 2 intra-op "
        f"threads (same seed, batches and config: only the order of floating-point sums "
        f"differs); test exact match of each best-on-dev prompt. ptlib sources "
        f"{', '.join(commits)}.",
        "", *summary_lines(units), "", study_agreement(units), ""])
    (RESULTS.with_suffix(".md")).write_text(text)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    runner = commands.add_parser("run", help="run the units not yet recorded")
    runner.add_argument("--relation", default="capital_of")
    runner.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    commands.add_parser("summary", help="the table from the recorded units")
    args = parser.parse_args()
    if args.command == "run":
        run(args.relation, args.seeds)
    else:
        summary()


if __name__ == "__main__":
    main()
