"""Command line: train, search and evaluate prompts without a notebook.

    python -m ptlib train  --task capital_of --template "[P][P][P] {x} [P][P][P]" --out runs/a
    python -m ptlib search --task capital_of --template "{x} [P][P][P]" --method autoprompt
    python -m ptlib eval   --task capital_of --prompt runs/a/prompt.safetensors
    python -m ptlib eval   --task capital_of --template "The capital of {x} is"

Add ``--model tiny`` to try any command in seconds on a tiny random-init model. ``train`` also
runs on several processes (``torchrun --nproc-per-node 2 -m ptlib train ...``; see
``ptlib.distributed``), with the same result as one process. Each command
prints its metrics as JSON and, with ``--out``, writes ``metrics.json`` (and the prompt) there.
The flags of ``train`` and ``search`` are built from ``TrainConfig`` and ``SearchConfig``:
every field is a flag with its type, help and choices, and ``none`` where a field may be None.
"""

import argparse
import dataclasses
import json
import sys
import types
import typing
from pathlib import Path

import torch

from ptlib import distributed
from ptlib.checkpoint import load_prompt, save_prompt
from ptlib.data import SPLITS, load_task
from ptlib.discrete import SearchConfig, search
from ptlib.errors import PTLibError
from ptlib.model import DEFAULT_MODEL, TINY_MODEL, load_lm, resolve_device
from ptlib.objective import evaluate
from ptlib.options import choices_of
from ptlib.template import parse_template
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
    train_cmd.add_argument("--resume", action="store_true",
                           help="continue from the checkpoint in --out (more --steps extends a "
                                "finished run)")
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
    eval_cmd.add_argument("--prompt", default=None, help="a prompt.safetensors file")
    return parser


def _write(out: str | None, metrics: dict) -> None:
    print(json.dumps(metrics, indent=2))
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "metrics.json").write_text(json.dumps(metrics, indent=2))


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


def run(args: argparse.Namespace, ranks: distributed.Ranks) -> dict:
    task = load_task(args.task, templates=args.task_template)
    if ranks.distributed and args.command != "train":
        raise PTLibError(f"only train runs on several processes, not {args.command}")
    lm = _load(args, ranks)
    report = task.split(args.split)
    if args.command == "train":
        result = train(lm, args.template, task.split("train"), task.split("dev"),
                       _config(args, TrainConfig), checkpoint_dir=args.out, resume=args.resume)
        if args.out and ranks.is_main:
            save_prompt(Path(args.out) / "prompt.safetensors", result.prompt, args.template,
                        lm.name)
        return {"command": "train", "task": task.name, "template": args.template,
                "config": result.config.as_dict(), "steps_done": len(result.history.step),
                "best_step": result.best_step, "best_dev_exact_match": result.best_dev_exact_match,
                args.split: result.evaluate(lm, report).as_dict()}
    if args.command == "search":
        result = search(lm, args.template, task.split("train"), task.split("dev"),
                        _config(args, SearchConfig))
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            torch.save(result.slot_ids, Path(args.out) / "slot_ids.pt")
        return {"command": "search", "task": task.name, "prompt": result.prompt_text,
                "forwards": result.forwards, "best_dev_exact_match": result.best_dev_exact_match,
                args.split: result.evaluate(lm, report).as_dict()}
    if (args.prompt is None) == (args.template is None):
        raise PTLibError("eval needs exactly one of --template (manual) or --prompt (file)")
    if args.prompt:
        prompt, meta = load_prompt(args.prompt, width=lm.width)
        result = evaluate(lm, parse_template(meta["template"]), report,
                          prompt=prompt.to(lm.device))
        template = meta["template"]
    else:
        result = evaluate(lm, parse_template(args.template), report)
        template = args.template
    return {"command": "eval", "task": task.name, "template": template,
            args.split: result.as_dict()}


def main(argv: list[str] | None = None) -> int:
    """Run one command; 0 on success, 2 on a bad flag (argparse) or a ptlib error. Under
    torchrun, every process trains and rank 0 alone writes and prints the results."""
    args = build_parser().parse_args(argv)
    ranks = distributed.init_from_env()
    try:
        metrics = run(args, ranks)
        if ranks.is_main:
            _write(args.out, metrics)
    except PTLibError as err:
        print(f"error: {err}", file=sys.stderr)
        distributed.finish(ranks, wait_for_peers=False)
        return 2
    distributed.finish(ranks)
    return 0
