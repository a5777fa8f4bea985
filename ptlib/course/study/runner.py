"""Running a study: each planned run the results file lacks, appended as it finishes.

``run_study`` stops at any point and resumes where it stopped, and grows run by run (``limit``,
``only``). Every record names the commit of the sources that produced it, the precision the LM
ran at, and the machine.

    python -m ptlib.course.study studies/course_study.json --limit 1      # one more run
    python -m ptlib.course.study studies/course_study.json --only relation=antonym --only seed=0,1
    python -m ptlib.course.study studies/course_study.json --plan         # what is left
    python -m ptlib.course.study studies/course_study.json --summary      # the table
"""

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ptlib.course.study.config import (
    FEW_SHOT,
    FILTERS,
    LORA,
    MANUAL,
    MANUAL_PLACEHOLDER,
    SEARCHES,
    RunSpec,
    StudyConfig,
    parse_only,
    plan,
)
from ptlib.course.study.records import (
    append_result,
    facts_sha,
    locked,
    read_results,
    resolved_config,
    run_key,
)
from ptlib.course.study.results import Study
from ptlib.data import Fact, Task, load_task
from ptlib.discrete import SearchConfig, best_manual_template, search, search_from_manual
from ptlib.errors import ConfigError, DataError
from ptlib.few_shot import few_shot
from ptlib.flops import trainable_parameters
from ptlib.hardware import machine_info
from ptlib.lora import LoRAConfig, train_lora
from ptlib.model import LM, load_lm
from ptlib.objective import Evaluation, evaluate
from ptlib.precision import resolve_precision
from ptlib.provenance import source_commit
from ptlib.template import parse_template
from ptlib.train_config import TrainConfig
from ptlib.training import train


def _test_record(result: Evaluation, facts: list[Fact]) -> dict:
    return {"exact_match": result.exact_match, "nll": result.nll, "facts": len(facts),
            "facts_sha": facts_sha(facts), "exact": [int(hit) for hit in result.exact],
            "first_rank": [int(rank) for rank in result.first_rank]}


def _precision(config: StudyConfig) -> str:
    """The precision the study's training runs use, resolved: the manual baseline and the
    manual template a run starts from are chosen and scored at it too."""
    return resolve_precision(TrainConfig(**config.train).precision)


def _chosen_manual(lm: LM, config: StudyConfig, task: Task) -> str:
    """The manual template with the best dev EM, at the study's precision."""
    text, _ = best_manual_template(lm, task, "dev", _precision(config))
    return text


def _run_manual(lm: LM, config: StudyConfig, task: Task) -> dict:
    precision = _precision(config)
    text, dev = best_manual_template(lm, task, "dev", precision)
    test = evaluate(lm, parse_template(text), task.split("test"), precision=precision)
    curve = {"step": [0], "exact_match": [dev.exact_match], "nll": [dev.nll]}
    return {"template": text, "prompt": text, "best_dev_exact_match": dev.exact_match,
            "dev_curve": curve, "precision": precision, "test_result": test}


def _run_search(lm: LM, config: StudyConfig, spec: RunSpec, task: Task, resolved: dict
                ) -> dict:
    """A discrete search, from the study's init token or from the manual template chosen on
    dev (written as slots that start at its tokens)."""
    search_config, extra = SearchConfig(**resolved), {}
    if SEARCHES[spec.method][1] == "manual":
        extra["start_template"] = _chosen_manual(lm, config, task)
        result = search_from_manual(lm, task, search_config, manual=extra["start_template"],
                                    show_progress=False)
    else:
        result = search(lm, _slot_template(lm, config, spec, task), task.split("train"),
                        task.split("dev"), search_config, show_progress=False)
    template = result.template
    history = result.history
    curve = {"step": history.eval_iteration, "exact_match": history.dev_exact_match,
             "nll": history.dev_nll, "forwards": history.dev_forwards()}
    return {"template": template, "prompt": result.prompt_text,
            "best_dev_exact_match": result.best_dev_exact_match, "dev_curve": curve,
            "forwards": result.forwards, "stopped_by": result.stopped_by,
            "precision": result.config.precision, **extra,
            "test_result": result.evaluate(lm, task.split("test"))}


def _slot_template(lm: LM, config: StudyConfig, spec: RunSpec, task: Task) -> str:
    """The run's slot template, ``{manual}`` filled with the manual template chosen on dev."""
    text = config.template_text(spec.template)
    if MANUAL_PLACEHOLDER in text:
        text = text.replace(MANUAL_PLACEHOLDER, _chosen_manual(lm, config, task))
    return text


def _run_training(lm: LM, config: StudyConfig, spec: RunSpec, task: Task, resolved: dict
                  ) -> dict:
    template = _slot_template(lm, config, spec, task)
    train_config = TrainConfig(**resolved)
    result = train(lm, template, task.split("train"), task.split("dev"), train_config,
                   show_progress=False)
    history = result.history
    per_step = 3 * train_config.batch_size * train_config.grad_accum  # forward + backward
    curve = {"step": history.eval_step, "exact_match": history.dev_exact_match,
             "nll": history.dev_nll, "best_step": result.best_step,
             "forwards": [per_step * step for step in history.eval_step],
             "prompt_norm": [float(p.norm(dim=1).mean()) for p in result.trajectory]}
    return {"template": template, "prompt": None,
            "best_dev_exact_match": result.best_dev_exact_match, "dev_curve": curve,
            "precision": result.precision,
            "trainable_parameters": trainable_parameters(result.encoder),
            "test_result": result.evaluate(lm, task.split("test"))}


def _run_few_shot(lm: LM, config: StudyConfig, spec: RunSpec, task: Task) -> dict:
    """k solved train facts (chosen by the seed) before the manual template chosen on dev."""
    precision, manual = _precision(config), _chosen_manual(lm, config, task)
    train_facts, k = task.split("train"), FEW_SHOT[spec.method]
    dev = few_shot(lm, manual, train_facts, task.split("dev"), k, spec.seed,
                   precision=precision)
    test = few_shot(lm, manual, train_facts, task.split("test"), k, spec.seed,
                    precision=precision)
    curve = {"step": [0], "exact_match": [dev.evaluation.exact_match],
             "nll": [dev.evaluation.nll]}
    return {"template": manual, "prompt": test.template,
            "best_dev_exact_match": dev.evaluation.exact_match, "dev_curve": curve,
            "precision": precision, "context_tokens": test.context_tokens,
            "trainable_parameters": 0, "test_result": test.evaluation}


def _run_lora(lm: LM, config: StudyConfig, spec: RunSpec, task: Task, resolved: dict
              ) -> dict:
    """LoRA through PEFT on the manual template chosen on dev (``ptlib.lora``)."""
    manual = _chosen_manual(lm, config, task)
    lora = LoRAConfig(**resolved)
    result = train_lora(lm, manual, task.split("train"), task.split("dev"), lora,
                        test_facts=task.split("test"), show_progress=False)
    history = result.history
    curve = {"step": history.eval_step, "exact_match": history.dev_exact_match,
             "nll": history.dev_nll, "best_step": result.best_step}
    return {"template": manual, "prompt": None,
            "best_dev_exact_match": result.best_dev_exact_match, "dev_curve": curve,
            "precision": lora.precision, "target_modules": list(result.target_modules),
            "trainable_parameters": result.trainable_parameters,
            "train_flops": result.train_flops, "test_result": result.test}


def run_one(lm: LM, config: StudyConfig, spec: RunSpec, task: Task) -> dict:
    """Run one spec and return its record (one line of the results file). The test facts are
    scored at the precision the run chose its prompt at."""
    resolved = resolved_config(config, spec, task)
    started, cpu_started = time.perf_counter(), time.process_time()
    if spec.method == MANUAL:
        outcome = _run_manual(lm, config, task)
    elif spec.method in SEARCHES:
        outcome = _run_search(lm, config, spec, task, resolved)
    elif spec.method in FEW_SHOT:
        outcome = _run_few_shot(lm, config, spec, task)
    elif spec.method == LORA:
        outcome = _run_lora(lm, config, spec, task, resolved)
    else:
        outcome = _run_training(lm, config, spec, task, resolved)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    test = outcome.pop("test_result")
    return {"key": run_key(config, spec, task), "study": config.name,
            "relation": spec.relation, "method": spec.method, "seed": spec.seed,
            "lr": spec.lr, "steps": spec.steps, "template_name": spec.template,
            "model": config.model, "config": resolved,
            **outcome, "test": _test_record(test, task.split("test")),
            "wall_seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
            "commit": source_commit(),
            "machine": machine_info()}


def pending_runs(config: StudyConfig, only: dict[str, list[str]] | None = None
                 ) -> tuple[list[RunSpec], dict[str, Task]]:
    """The planned runs the results file lacks, in plan order, and the tasks they need."""
    tasks: dict[str, Task] = {}
    done = {record["key"] for record in read_results(config.results)}
    left = []
    for spec in plan(config, only):
        task = tasks.setdefault(spec.relation, load_task(spec.relation))
        if run_key(config, spec, task) not in done:
            left.append(spec)
    return left, tasks


def run_study(config: StudyConfig | str | Path, lm: LM | None = None, *,
              limit: int | None = None, only: dict[str, list[str]] | None = None,
              log: Callable[[str], None] | None = print) -> list[dict]:
    """Run the planned runs that the results file lacks, appending each as it finishes.

    ``limit`` stops after that many new runs; ``only`` narrows the plan (see ``plan``). The
    model is loaded only if a run is left to do and ``lm`` is None. Returns the new records.
    """
    if not isinstance(config, StudyConfig):
        config = StudyConfig.from_file(config)
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ConfigError(f"limit must be an integer >= 0, got {limit!r}")
    say = log or (lambda _: None)
    source_commit()  # worked out now, before any run: the records name the code loaded here
    config.results.parent.mkdir(parents=True, exist_ok=True)
    new: list[dict] = []
    with locked(config.results):
        read_results(config.results, repair=True)
        pending, tasks = pending_runs(config, only)
        todo = pending if limit is None else pending[:limit]
        say(f"study {config.name}: {len(pending)} runs to do"
            + (f", running {len(todo)} (limit {limit})" if limit is not None else ""))
        if todo and lm is None:
            lm = load_lm(config.model)
        for number, spec in enumerate(todo, start=1):
            record = run_one(lm, config, spec, tasks[spec.relation])
            append_result(config.results, record)
            new.append(record)
            say(f"[{number}/{len(todo)}] {spec.label}: test EM "
                f"{record['test']['exact_match']:.3f}, {record['wall_seconds']:.1f} s")
    return new


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ptlib.course.study",
        description="Run, resume or summarise a study (one JSON line per finished run).")
    parser.add_argument("config", help="study config JSON (the course's: "
                                       "studies/course_study.json)")
    parser.add_argument("--limit", type=int, default=None, help="run at most this many runs")
    parser.add_argument("--only", action="append", default=[], metavar="FIELD=VALUE[,VALUE]",
                        help=f"keep runs whose FIELD ({', '.join(FILTERS)}) is one of the "
                             "values; repeatable")
    parser.add_argument("--plan", action="store_true", help="list the runs left; run nothing")
    parser.add_argument("--summary", action="store_true",
                        help="print the relation x method table; run nothing")
    args = parser.parse_args(argv)
    try:
        config = StudyConfig.from_file(args.config)
        only = parse_only(args.only)
        if args.summary:
            print(Study.load(config).summary_table())
        elif args.plan:
            left, _ = pending_runs(config, only)
            for spec in left:
                print(spec.label)
            print(f"{len(left)} runs left of {len(plan(config, only))} planned")
        else:
            run_study(config, limit=args.limit, only=only)
    except (ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
