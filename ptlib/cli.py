"""Command line: train, search, evaluate and use prompts without a notebook.

    python -m ptlib train  --task capital_of --template "[P][P][P] {x} [P][P][P]" --out runs/a
    python -m ptlib search --task capital_of --template "{x} [P][P][P]" --method autoprompt
    python -m ptlib eval   --task capital_of --prompt runs/a/prompt.safetensors
    python -m ptlib eval   --task capital_of --template "The capital of {x} is"
    echo France | python -m ptlib generate --prompt runs/a/prompt.safetensors

``generate`` reads one input per line of standard input and prints one continuation per line
(``--jsonl``: one JSON object per line).

Add ``--model tiny`` to try any command in seconds on a tiny random-init model. ``train`` also
runs on several processes (``torchrun --nproc-per-node 2 -m ptlib train ...``; see
``ptlib.distributed``), with the same result as one process. Each command
prints its metrics as JSON and, with ``--out``, writes ``metrics.json`` (and the prompt) there.
``train --resume`` refuses a folder without a checkpoint (``--resume-if-present`` starts one
there) or with one written for another model, task, template or config; Ctrl-C saves the run
at the next step and says how to resume it. ``eval --prompt`` reads the prompt file of any
``train`` or ``search``, checked against its content hash and refused on another model
(``--allow-other-model`` to transfer it anyway).
The flags of ``train`` and ``search`` are built from ``TrainConfig`` and ``SearchConfig``:
every field is a flag with its type, help and choices, and ``none`` where a field may be None.
"""

import argparse
import dataclasses
import json
import math
import sys
import types
import typing
from pathlib import Path

from ptlib import distributed
from ptlib.atomic import atomic_file
from ptlib.checkpoint import prompt_argument, read_prompt_file, save_prompt, save_slots
from ptlib.data import SPLITS, Task, load_task
from ptlib.discrete import SearchConfig, search
from ptlib.errors import ConfigError, DataError, PTLibError, TemplateError
from ptlib.model import DEFAULT_MODEL, TINY_MODEL, load_lm, resolve_device
from ptlib.objective import evaluate
from ptlib.options import choices_of
from ptlib.template import SLOT, parse_template
from ptlib.train_config import TrainConfig
from ptlib.training import train


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True,
                        help="a shipped task name (e.g. capital_of) or a .jsonl/.tsv file")
    parser.add_argument("--task-template", action="append", default=None,
                        help="a manual template for a task file, e.g. 'The capital of {x} is' "
                             "(repeatable)")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"{DEFAULT_MODEL} (embedded, the default), {TINY_MODEL} (a tiny "
                             "random-init model for trying things out), an HF id or a folder")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--out", default=None, help="folder for metrics.json and the prompt")
    parser.add_argument("--split", default="test", choices=SPLITS, help="split to report")


def _unwrap_optional(hint) -> tuple[type, bool]:
    """``int | None`` -> (int, True); ``int`` -> (int, False)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return inner[0], len(inner) < len(typing.get_args(hint))
    return hint, False


def _caster(kind: type, optional: bool):
    """Parse a flag's text as ``kind``, or as None when ``optional`` and the text is none."""
    def cast(text: str):
        if optional and text.strip().lower() == "none":
            return None
        return kind(text)
    cast.__name__ = kind.__name__ + (" or none" if optional else "")  # argparse's error names it
    return cast


def _add_config(parser: argparse.ArgumentParser, config_type) -> None:
    """One flag per field of ``config_type``, typed, documented and with its choices."""
    hints = typing.get_type_hints(config_type)
    for field in dataclasses.fields(config_type):
        flag = f"--{field.name.replace('_', '-')}"
        kind, optional = _unwrap_optional(hints[field.name])
        text = f"{field.metadata.get('help', '')} (default: {field.default})"
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction,
                                default=field.default, help=text)
            continue
        choices = choices_of(field)
        metavar = None if choices else kind.__name__.upper() + ("|none" if optional else "")
        parser.add_argument(flag, type=_caster(kind, optional), default=field.default,
                            choices=choices, help=text, metavar=metavar)


def _config(args: argparse.Namespace, config_type):
    return config_type(**{f.name: getattr(args, f.name) for f in dataclasses.fields(config_type)})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ptlib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    train_cmd = commands.add_parser("train", help="train a continuous prompt")
    _common(train_cmd)
    train_cmd.add_argument("--template", default="[P][P][P] {x} [P][P][P]",
                           help="template with [P] slots and {x}")
    resume = train_cmd.add_mutually_exclusive_group()
    resume.add_argument("--resume", action="store_true",
                        help="continue from the checkpoint in --out, which must be there (more "
                             "--steps extends a finished run)")
    resume.add_argument("--resume-if-present", action="store_true",
                        help="continue from the checkpoint in --out when there is one, else "
                             "start there")
    train_cmd.add_argument("--shard-lm", action="store_true",
                           help="under torchrun: shard the frozen LM over the processes with "
                                "FSDP2 (for an LM too big for one device)")
    _add_config(train_cmd, TrainConfig)
    search_cmd = commands.add_parser("search", help="discrete prompt search")
    _common(search_cmd)
    search_cmd.add_argument("--template", default="{x} [P][P][P]",
                            help="template with [P] slots and {x}")
    _add_config(search_cmd, SearchConfig)
    eval_cmd = commands.add_parser("eval", help="evaluate a manual template or a saved prompt")
    _common(eval_cmd)
    eval_cmd.add_argument("--template", default=None, help="manual template (no slots)")
    eval_cmd.add_argument("--prompt", default=None,
                          help="a prompt.safetensors file written by train or search")
    eval_cmd.add_argument("--allow-other-model", action="store_true",
                          help="use a prompt saved for another model (same width d)")
    _add_generate(commands)
    return parser


def _add_generate(commands) -> None:
    """``generate``: continue a saved prompt (or a manual template) for subjects on stdin."""
    cmd = commands.add_parser("generate", help="generate text after a saved prompt or a manual "
                                               "template, for subjects read from stdin")
    cmd.add_argument("--prompt", default=None,
                     help="a prompt.safetensors file written by train or search")
    cmd.add_argument("--template", default=None, help="manual template (no slots)")
    cmd.add_argument("--model", default=DEFAULT_MODEL,
                     help=f"{DEFAULT_MODEL} (the default), {TINY_MODEL}, an HF id or a folder")
    cmd.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    cmd.add_argument("--allow-other-model", action="store_true",
                     help="use a prompt saved for another model (same width d)")
    cmd.add_argument("--max-new-tokens", type=int, default=8, help="at most this many tokens")
    cmd.add_argument("--sample", action="store_true", help="sample instead of greedy argmax")
    cmd.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    cmd.add_argument("--seed", type=int, default=0, help="sampling seed (same seed, same text)")
    cmd.add_argument("--batch-size", type=int, default=32, help="subjects per forward batch")
    cmd.add_argument("--jsonl", action="store_true",
                     help='print {"input": ..., "output": ...} JSON lines instead of text')


def _generate_args(args: argparse.Namespace, lm) -> dict:
    """The template and prompt of ``generate`` from --template or --prompt."""
    if (args.prompt is None) == (args.template is None):
        raise ConfigError("generate needs exactly one of --template (manual) or --prompt (file)")
    if args.template is not None:
        if parse_template(args.template).num_slots:
            raise TemplateError(f"generate --template takes a manual template without {SLOT} "
                                "slots: generate with a trained or searched prompt via --prompt")
        return {"template": args.template}
    values, meta = read_prompt_file(args.prompt, lm, allow_other_model=args.allow_other_model)
    return {"template": meta["template"]} | prompt_argument(values, meta, lm.device)


def _generate(args: argparse.Namespace) -> int:
    """Read subjects from stdin (one a line, blank lines skipped), print one continuation per
    line (or a JSON line with --jsonl); 2 on a ptlib error."""
    from ptlib.generate import generate

    try:
        if args.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
        lm = load_lm(args.model, device=args.device)
        given = _generate_args(args, lm)
        inputs = [line for line in sys.stdin.read().splitlines() if line.strip()]
        if not inputs:
            raise DataError("generate read no subjects from standard input (one per line)")
        for start in range(0, len(inputs), args.batch_size):
            chunk = inputs[start : start + args.batch_size]
            outputs = generate(lm, inputs=chunk, max_new_tokens=args.max_new_tokens,
                               greedy=not args.sample, temperature=args.temperature,
                               seed=args.seed, **given)
            for x, y in zip(chunk, outputs, strict=True):
                print(json.dumps({"input": x, "output": y}) if args.jsonl else y)
    except PTLibError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _finite(value):
    """``value`` with every non-finite float (NaN, inf) replaced by None, at any depth."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _write(out: str | None, metrics: dict) -> None:
    """Print ``metrics`` as strict JSON (non-finite numbers as null) and write it to
    ``out``/metrics.json."""
    text = json.dumps(_finite(metrics), indent=2, allow_nan=False)
    print(text)
    if out:
        with atomic_file(Path(out) / "metrics.json") as staging:
            staging.write_text(text)


def _load(args: argparse.Namespace, ranks: distributed.Ranks):
    device = distributed.device_for(ranks, args.device)
    if not getattr(args, "shard_lm", False):
        return load_lm(args.model, device=device)
    if not ranks.distributed:
        raise PTLibError("--shard-lm needs several processes: start with torchrun "
                         "--nproc-per-node N -m ptlib train ...")
    lm = load_lm(args.model, device="cpu")  # whole in host memory, then 1/N on the device
    distributed.shard_lm(lm.model)
    target = resolve_device(device)
    return dataclasses.replace(lm, model=lm.model.to(target), device=target)


def _check_out(out: str | None) -> None:
    if out and Path(out).exists() and not Path(out).is_dir():
        raise ConfigError(f"--out {out} is a file: --out names a folder (it is created if "
                          "missing)")


def _check_splits(task: Task, names: list[str]) -> None:
    """Every split the command uses has facts, checked before any training or search."""
    for name in dict.fromkeys(names):
        if not task.split(name):
            raise DataError(f"task {task.name!r} has no facts in its {name} split (splits are "
                            "fixed by a hash of each subject): add facts, or report another "
                            "--split")


def _train(args: argparse.Namespace, ranks: distributed.Ranks, lm, task: Task) -> dict:
    resume = "if_present" if args.resume_if_present else args.resume
    result = train(lm, args.template, task.split("train"), task.split("dev"),
                   _config(args, TrainConfig), checkpoint_dir=args.out, resume=resume)
    if args.out and ranks.is_main:
        save_prompt(Path(args.out) / "prompt.safetensors", result.prompt, args.template, lm,
                    task=task, config=result.config, deep=result.deep)
    return {"command": "train", "task": task.name, "template": args.template,
            "config": result.config.as_dict(), "steps_done": len(result.history.step),
            "best_step": result.best_step, "best_dev_exact_match": result.best_dev_exact_match,
            args.split: result.evaluate(lm, task.split(args.split)).as_dict()}


def _search(args: argparse.Namespace, lm, task: Task) -> dict:
    """A search; ``forwards`` beside ``max_forwards`` shows how far the last iteration passed
    the budget (it is checked after each iteration)."""
    config = _config(args, SearchConfig)
    result = search(lm, args.template, task.split("train"), task.split("dev"), config)
    if args.out:
        save_slots(Path(args.out) / "prompt.safetensors", result.slot_ids, args.template, lm,
                   task=task, config=result.config)
    return {"command": "search", "task": task.name, "prompt": result.prompt_text,
            "forwards": result.forwards, "max_forwards": config.max_forwards,
            "stopped_by": result.stopped_by, "best_dev_exact_match": result.best_dev_exact_match,
            args.split: result.evaluate(lm, task.split(args.split)).as_dict()}


def _eval(args: argparse.Namespace, lm, task: Task) -> dict:
    if (args.prompt is None) == (args.template is None):
        raise ConfigError("eval needs exactly one of --template (manual) or --prompt (file)")
    facts = task.split(args.split)
    if args.template is not None:
        template = parse_template(args.template)
        if template.num_slots:
            raise TemplateError(f"eval --template takes a manual template without {SLOT} "
                                "slots: evaluate a trained or searched prompt with --prompt")
        result = evaluate(lm, template, facts)
        return {"command": "eval", "task": task.name, "template": args.template,
                args.split: result.as_dict()}
    values, meta = read_prompt_file(args.prompt, lm, allow_other_model=args.allow_other_model)
    result = evaluate(lm, parse_template(meta["template"]), facts,
                      **prompt_argument(values, meta, lm.device))
    return {"command": "eval", "task": task.name, "template": meta["template"],
            "prompt_kind": meta["kind"], args.split: result.as_dict()}


def run(args: argparse.Namespace, ranks: distributed.Ranks) -> dict:
    _check_out(args.out)
    task = load_task(args.task, templates=args.task_template)
    if ranks.distributed and args.command != "train":
        raise PTLibError(f"only train runs on several processes, not {args.command}")
    _check_splits(task, ["train", "dev", args.split] if args.command != "eval" else [args.split])
    lm = _load(args, ranks)
    if args.command == "train":
        return _train(args, ranks, lm, task)
    if args.command == "search":
        return _search(args, lm, task)
    return _eval(args, lm, task)


def main(argv: list[str] | None = None) -> int:
    """Run one command; 0 on success, 2 on a bad flag (argparse) or a ptlib error, 130 on
    Ctrl-C (one line saying how to resume). Under torchrun, every process trains and rank 0
    alone writes and prints the results."""
    args = build_parser().parse_args(argv)
    if args.command == "generate":
        return _generate(args)
    ranks = distributed.init_from_env()
    try:
        metrics = run(args, ranks)
        if ranks.is_main:
            _write(args.out, metrics)
    except PTLibError as err:
        print(f"error: {err}", file=sys.stderr)
        distributed.finish(ranks, wait_for_peers=False)
        return 2
    except KeyboardInterrupt as err:  # TrainingInterrupted says where it stopped, how to resume
        print(str(err) or "interrupted", file=sys.stderr)
        distributed.finish(ranks, wait_for_peers=False)
        return 130
    distributed.finish(ranks)
    return 0
