"""Discrete search efficiency on the embedded SmolLM2 (CPU).

1. **Batched candidate scoring.** ``ptlib.objective.score_candidates`` (the K x B (prompt,
   example) rows in as few forwards as ``max_rows`` allows) against a naive loop of one
   ``batch_scores(lm, batch, slot_ids=candidate)`` forward per candidate, at K = 10 and K = 50
   candidates on a batch of 16 facts. The two are timed interleaved (alternating in one
   process) and reported as a ratio of seconds per iteration; the script asserts that both
   give the same mean log-likelihoods (allclose).
2. **Objective per forward pass.** ``ptlib.search`` with ``method="autoprompt"`` (HotFlip-ranked
   swaps, pays a backward pass per iteration) against ``method="random"`` (uniform swaps), under
   the same ``max_forwards`` budget and seeds, on one task: the train objective of the best
   prompt (mean log P(y | x, P) over all train facts), best dev and test exact match (EM).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/autoprompt_efficiency.py           # full (~10 min)
    HF_HUB_OFFLINE=1 .venv/bin/python bench/autoprompt_efficiency.py --quick   # smoke test

Writes ``bench/results/autoprompt_efficiency.json``.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see peft_vs_ptlib.py; before torch
import torch  # noqa: E402
from _common import interleave, mean_sd, ratio_stats, write_result  # noqa: E402

import ptlib  # noqa: E402
from ptlib.discrete import SearchConfig, allowed_tokens  # noqa: E402
from ptlib.objective import batch_scores, evaluate, make_batch, score_candidates  # noqa: E402
from ptlib.template import parse_template  # noqa: E402

TASK = "capital_of"
TEMPLATE = "{x} [P][P][P]"


def candidate_scoring(lm, task, ks, batch_size, rounds) -> dict:
    template = parse_template(TEMPLATE)
    facts = task.split("train")[:batch_size]
    batch = make_batch(lm, template, facts)
    pool = allowed_tokens(lm, [f.y for f in task.split("train")]).nonzero().squeeze(1)
    generator = torch.Generator().manual_seed(0)
    out = {}
    for k in ks:
        picks = torch.randint(len(pool), (k, template.num_slots), generator=generator)
        candidates = pool[picks]  # (k, L)

        def batched(n: int, candidates=candidates) -> list[float]:
            times = []
            for _ in range(n):
                start = time.perf_counter()
                batched.values = score_candidates(lm, batch, candidates)
                times.append(time.perf_counter() - start)
            return times

        def naive(n: int, candidates=candidates) -> list[float]:
            times = []
            for _ in range(n):
                start = time.perf_counter()
                with torch.no_grad():
                    naive.values = torch.stack([
                        batch_scores(lm, batch, slot_ids=c).logprob.mean() for c in candidates])
                times.append(time.perf_counter() - start)
            return times

        print(f"scoring k={k}: {rounds} interleaved rounds", flush=True)
        times = interleave({"batched": batched, "naive": naive}, rounds=rounds, block=1,
                           warmup=1 if k == ks[0] else 0)
        assert torch.allclose(batched.values, naive.values, atol=1e-3, rtol=1e-4), (
            (batched.values - naive.values).abs().max())
        out[f"k{k}"] = {
            "k": k, "batch_size": batch.size, "rows": k * batch.size,
            "forwards_batched": -(-k // max(1, 512 // batch.size)), "forwards_naive": k,
            "max_abs_difference": (batched.values - naive.values).abs().max().item(),
            "times": times,
            "ratio_batched_over_naive": ratio_stats(times["batched"], times["naive"]),
        }
        print(f"  batched/naive = "
              f"{out[f'k{k}']['ratio_batched_over_naive']['median_of_round_ratios']:.3f}",
              flush=True)
    return {"template": TEMPLATE, "by_k": out}


def search_budget(lm, task, seeds, max_forwards, num_candidates, batch_size,
                  eval_every) -> dict:
    train, dev, test = task.split("train"), task.split("dev"), task.split("test")
    template = parse_template(TEMPLATE)
    rows = []
    for seed in seeds:
        for method in ("autoprompt", "random"):
            config = SearchConfig(method=method, iterations=10_000, seed=seed,
                                  num_candidates=num_candidates, batch_size=batch_size,
                                  eval_every=eval_every, max_forwards=max_forwards)
            result = ptlib.search(lm, template, train, dev, config, show_progress=False)
            train_eval = result.evaluate(lm, train)
            test_eval = result.evaluate(lm, test)
            rows.append({
                "method": method, "seed": seed, "prompt": result.prompt_text,
                "forwards": result.forwards, "iterations": len(result.history.iteration),
                "accepted": sum(result.history.accepted),
                "seconds": result.seconds,
                "train_objective": -train_eval.nll,  # mean log P(y|x,P) of the best prompt
                "train_exact_match": train_eval.exact_match,
                "best_dev_exact_match": result.best_dev_exact_match,
                "test_exact_match": test_eval.exact_match,
                "history": {"forwards": result.history.forwards,
                            "objective": result.history.objective},
            })
            print(f"  {method} seed {seed}: objective {-train_eval.nll:.3f}, dev "
                  f"{result.best_dev_exact_match:.3f}, test {test_eval.exact_match:.3f}, "
                  f"{result.forwards} forwards, {result.seconds:.0f} s: {result.prompt_text!r}",
                  flush=True)
    summary = {}
    for method in ("autoprompt", "random"):
        mine = [r for r in rows if r["method"] == method]
        summary[method] = {key: mean_sd([r[key] for r in mine]) for key in
                           ("train_objective", "best_dev_exact_match", "test_exact_match",
                            "forwards", "iterations", "seconds")}
    manual = evaluate(lm, parse_template(task.templates[0]), test).exact_match
    return {"template": TEMPLATE, "max_forwards": max_forwards,
            "num_candidates": num_candidates, "batch_size": batch_size, "seeds": list(seeds),
            "manual_test_exact_match": manual, "manual_template": task.templates[0],
            "runs": rows, "summary": summary}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--task", default=TASK)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--max-forwards", type=int, default=2400,
                        help="sequence forwards per search (a backward counts as two)")
    parser.add_argument("--eval-every", type=int, default=5)
    args = parser.parse_args(argv)
    ks = (10, 50)
    if args.quick:
        ks, args.rounds, args.seeds, args.max_forwards = (10,), 1, 1, 600
    torch.manual_seed(0)
    lm = ptlib.load_lm(device="cpu")
    task = ptlib.load_task(args.task)
    out = {"quick": args.quick, "task": task.name,
           "command": " ".join(["bench/autoprompt_efficiency.py"] + (argv or sys.argv[1:]))}
    out["scoring"] = candidate_scoring(lm, task, ks, 16, args.rounds)
    out["search"] = search_budget(lm, task, list(range(args.seeds)), args.max_forwards, 10, 16,
                                  args.eval_every)
    write_result("autoprompt_efficiency", out)


if __name__ == "__main__":
    main()
