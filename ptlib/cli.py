"""Command line: train, search and evaluate prompts without a notebook.

    python -m ptlib train  --task capital_of --template "[P][P][P] {x} [P][P][P]" --out runs/a
    python -m ptlib search --task capital_of --template "{x} [P][P][P]" --method autoprompt
    python -m ptlib eval   --task capital_of --prompt runs/a/prompt.safetensors
    python -m ptlib eval   --task capital_of --template "The capital of {x} is"

Each writes ``metrics.json`` (and the prompt) into ``--out``.
"""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

from ptlib.checkpoint import load_prompt, save_prompt
from ptlib.data import load_task
from ptlib.discrete import SearchConfig, search
from ptlib.errors import PTLibError
from ptlib.model import DEFAULT_MODEL, load_lm
from ptlib.objective import evaluate
from ptlib.template import parse_template
from ptlib.train import TrainConfig, train


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, help="shipped task name or a .jsonl/.tsv file")
    parser.add_argument("--task-template", action="append", default=None,
                        help="manual template(s) for a task file (repeatable)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model name, HF id or folder")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=None, help="folder for metrics.json and the prompt")
    parser.add_argument("--split", default="test", help="split to report (default: test)")


def _add_config(parser: argparse.ArgumentParser, config_type) -> None:
    for field in dataclasses.fields(config_type):
        kind = field.type if isinstance(field.type, type) else str
        if kind is bool:
            parser.add_argument(f"--{field.name.replace('_', '-')}",
                                action=argparse.BooleanOptionalAction, default=field.default)
            continue
        caster = {"int": int, "float": float, "str": str}.get(getattr(kind, "__name__", ""), _auto)
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=caster,
                            default=field.default)


def _auto(text: str):
    for caster in (int, float):
        try:
            return caster(text)
        except ValueError:
            pass
    return None if text.lower() == "none" else text


def _config(args: argparse.Namespace, config_type):
    return config_type(**{f.name: getattr(args, f.name) for f in dataclasses.fields(config_type)})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ptlib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    train_cmd = commands.add_parser("train", help="train a continuous prompt")
    _common(train_cmd)
    train_cmd.add_argument("--template", default="[P][P][P] {x} [P][P][P]")
    train_cmd.add_argument("--resume", action="store_true",
                           help="continue from the checkpoint in --out")
    _add_config(train_cmd, TrainConfig)
    search_cmd = commands.add_parser("search", help="discrete prompt search")
    _common(search_cmd)
    search_cmd.add_argument("--template", default="{x} [P][P][P]")
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


def run(args: argparse.Namespace) -> dict:
    task = load_task(args.task, templates=args.task_template)
    lm = load_lm(args.model, device=args.device)
    report = task.split(args.split)
    if args.command == "train":
        result = train(lm, args.template, task.split("train"), task.split("dev"),
                       _config(args, TrainConfig), checkpoint_dir=args.out, resume=args.resume)
        if args.out:
            save_prompt(Path(args.out) / "prompt.safetensors", result.prompt, args.template,
                        lm.name)
        return {"command": "train", "task": task.name, "template": args.template,
                "config": result.config.as_dict(), "best_step": result.best_step,
                "best_dev_p_at_1": result.best_dev_p_at_1,
                args.split: result.evaluate(lm, report).as_dict()}
    if args.command == "search":
        result = search(lm, args.template, task.split("train"), task.split("dev"),
                        _config(args, SearchConfig))
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            torch.save(result.slot_ids, Path(args.out) / "slot_ids.pt")
        return {"command": "search", "task": task.name, "prompt": result.prompt_text,
                "forwards": result.forwards, "best_dev_p_at_1": result.best_dev_p_at_1,
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
    args = build_parser().parse_args(argv)
    try:
        _write(args.out, run(args))
    except PTLibError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
