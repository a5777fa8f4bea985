"""Run every CPU benchmark, one at a time in its own subprocess, and write ``bench/RESULTS.md``.

Each benchmark writes ``bench/results/<name>.json`` (its log goes to ``bench/results/<name>.log``);
this script then renders them, with the machine and the command, into one Markdown report,
plus a summary of the GPU session recorded on a lent H200 (``bench/gpu_*_nvidia_h200.json``,
not rerun here).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/run_all.py            # or: make bench (~30-40 min)
    HF_HUB_OFFLINE=1 .venv/bin/python bench/run_all.py --quick    # smoke test
    HF_HUB_OFFLINE=1 .venv/bin/python bench/run_all.py --resume   # after an interruption
    HF_HUB_OFFLINE=1 .venv/bin/python bench/run_all.py --report-only   # re-render RESULTS.md
"""

import argparse
import os
import subprocess
import sys
import time

from _common import BENCH_DIR, RESULTS_DIR, machine_info, ratio_stats, read_result

import ptlib
from ptlib import stats
from ptlib.precision import resolve_precision

BENCHMARKS = ("roofline", "bf16_accuracy", "peft_vs_ptlib", "autoprompt_efficiency", "memory")
REPORT = BENCH_DIR / "RESULTS.md"
# Measurements with their own commands, not rerun here: each wrote bench/results/<name>.md
LONG_MEASUREMENTS = ("rounding_sensitivity", "compute_to_quality", "method_step_time")


def run(name: str, quick: bool, resume: bool = False) -> tuple[int, float]:
    command = [sys.executable, str(BENCH_DIR / f"{name}.py")] + (["--quick"] if quick else [])
    if resume and name == "peft_vs_ptlib":
        command.append("--resume")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    log = RESULTS_DIR / f"{name}.log"
    print(f"== {name}: {' '.join(command)} (log: {log})", flush=True)
    # OpenMP's wait policy is each script's own choice (roofline.py keeps the default)
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                        "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"}
    start = time.perf_counter()
    with log.open("w") as handle:
        code = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env,
                              cwd=BENCH_DIR.parent, check=False).returncode
    seconds = time.perf_counter() - start
    print(f"   exit {code} after {seconds / 60:.1f} min", flush=True)
    return code, seconds


def load(name: str) -> dict | None:
    return read_result(RESULTS_DIR / f"{name}.json")


def pct(value: float) -> str:
    return f"{100 * value:.1f}"


def msd(stats: dict, scale: float = 100.0, digits: int = 1) -> str:
    return f"{scale * stats['mean']:.{digits}f} ± {scale * stats['sd']:.{digits}f}"


def table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def peft_section(data: dict, goals: dict) -> list[str]:
    out = ["## ptlib vs PEFT P-Tuning (`bench/peft_vs_ptlib.py`)", ""]
    out += [f"Command: `{data['command']}`. PEFT's P-Tuning defaults: "
            + ", ".join(f"{k} = {v}" for k, v in data["peft_defaults"].items()) + ".", ""]
    check = data["indexing_check"]
    out += [f"Indexing check (PEFT-style full-logit evaluation with no virtual tokens vs "
            f"`ptlib.evaluate`, {check['task']} test, `{check['template']}`): exact match "
            f"(EM) {pct(check['exact_match_peft_style'])} vs "
            f"{pct(check['exact_match_ptlib'])}, NLL {check['nll_peft_style']:.4f} vs "
            f"{check['nll_ptlib']:.4f}. ptlib's LM unchanged after the run: "
            f"{data.get('ptlib_lm_unchanged')}.", ""]
    if data.get("step_time"):
        out += peft_speed_section(data, goals)
    if data.get("accuracy"):
        out += peft_accuracy_section(data, goals)
    return out


def peft_speed_section(data: dict, goals: dict) -> list[str]:
    """(a): ptlib / PEFT seconds per training step, each encoder and precision."""
    speed = data["step_time"]
    out = ["### (a) Seconds per training step, ratio ptlib / PEFT (interleaved)", "",
           f"Measured by `{speed.get('measured_by', data['command'])}`. "
           f"Task {speed['task']} train split, batch {speed['batch_size']}, "
           f"{speed['num_virtual_tokens']} virtual tokens then `{speed['peft_text']}` "
           f"(ptlib template `{speed['template_ptlib']}`: the same token ids), "
           f"AdamW lr {speed['lr']}; {speed['rounds']} rounds x {speed['block']} steps per "
           f"contender, all contenders in turn (order reversed every round), after one "
           f"warm-up step each. Ratio = median over rounds of mean(ptlib step) / "
           f"mean(PEFT step) in that round (below 1: ptlib is faster). PEFT runs fp32 "
           f"(its default); ptlib fp32 is identical precision; ptlib bf16 runs the frozen "
           f"LM's weights cast to bf16 once, with the encoder, loss and optimizer in fp32."
           , ""]
    rows = []
    ratios = speed["ratios_ptlib_over_peft"]
    params = speed["encoder_params"]
    for v in speed["variants"]:
        key = v["key"]
        fp32, bf16 = ratios[f"{key}_fp32"], ratios[f"{key}_bf16"]
        rows.append([
            v["encoder"], v["peft_hidden"] or "d (default)",
            v["ptlib_hidden"] or "d (default)",
            f"{params[f'peft_{key}'] / 1e6:.2f}M / {params[f'ptlib_{key}_fp32'] / 1e6:.2f}M",
            f"{fp32['median_of_round_ratios']:.2f}", f"{fp32['ratio_of_medians']:.2f}",
            f"{bf16['median_of_round_ratios']:.2f}", f"{bf16['ratio_of_medians']:.2f}",
            f"{fp32['median_step_s'][1]:.2f} / {fp32['median_step_s'][0]:.2f} / "
            f"{bf16['median_step_s'][0]:.2f}",
        ])
    out += table(["encoder", "PEFT hidden", "ptlib hidden", "encoder params PEFT / ptlib",
                  "ptlib fp32 / PEFT", "(ratio of medians)", "ptlib bf16 / PEFT",
                  "(ratio of medians)", "median s/step PEFT / ptlib fp32 / ptlib bf16 "
                  "(shared machine: indicative only)"], rows)
    if "defaults_vs_defaults" in ratios:
        # today's default precision, from the recorded step times (the run may predate it)
        precision = resolve_precision(ptlib.TrainConfig().precision)
        times = speed["times"]
        default = ratio_stats(times[f"ptlib_lstm_default_{precision}"], times["peft_mlp_default"])
        recorded = speed["ptlib_default_precision"]
        then = ("" if recorded == precision else f"; the run was recorded when `auto` meant "
                f"{recorded} here, {ratios['defaults_vs_defaults']['median_of_round_ratios']:.2f}")
        out += ["Each library with its defaults (ptlib: LSTM encoder, hidden d, precision "
                f"`auto` = {precision}; PEFT: MLP encoder, hidden d, fp32): "
                f"ptlib / PEFT = **{default['median_of_round_ratios']:.2f}** (ratio of "
                f"medians {default['ratio_of_medians']:.2f}{then}).", ""]
        goals["step time <= 0.6x PEFT, each with its defaults"] = (
            default["median_of_round_ratios"] <= 0.6,
            f"{default['median_of_round_ratios']:.2f}")
    return out


def peft_accuracy_section(data: dict, goals: dict) -> list[str]:
    """(b): test exact match of ptlib's and PEFT's layouts, mean ± sd over seeds."""
    acc = data["accuracy"]
    configs = acc["configs"]
    out = ["### (b) Test exact match (%), mean ± sd over seeds", "",
           f"Measured by `{acc.get('measured_by', data['command'])}`. "
           f"{acc['steps']} steps, batch {acc['batch_size']}, AdamW lr ptlib "
           f"{acc['lr']['ptlib']} / PEFT {acc['lr']['peft']}, seeds {acc['seeds']}, dev "
           f"evaluation every {acc['eval_every']} steps; every run keeps its best-on-dev "
           f"prompt (PEFT's last-step prompt shown too). ptlib: {acc['ptlib_encoder']}; "
           f"PEFT: {acc['peft_encoder']}. `{{manual}}` is the task's first manual "
           f"template. \"ptlib best\" takes, per task, the ptlib layout with the higher "
           f"mean dev EM (chosen on dev, not test). Every PEFT result was cross-checked "
           f"against ptlib's evaluation of PEFT's own prompt vectors.", ""]
    header = ["task", "manual prompt"]
    header += [f"{c['library']} `{c['layout']}`" for c in configs]
    header += ["ptlib best (by dev)", "PEFT last step"]
    rows = []
    for task in acc["tasks"]:
        entry = acc["summary"][task]
        row = [task, pct(entry["manual_test_exact_match"])]
        row += [msd(c["test_exact_match"]) for c in entry["configs"]]
        row.append(msd(entry["ptlib_best"]["test_exact_match"]))
        row.append("; ".join(msd(c["last_test_exact_match"]) for c in entry["configs"]
                             if c["library"] == "peft"))
        rows.append(row)
    avg = acc["average_test_exact_match"]
    rows.append(["**average**", pct(avg["manual"])]
                + [f"**{pct(avg[f'config_{i}'])}**" for i in range(len(configs))]
                + [f"**{pct(avg['ptlib_best'])}**", ""])
    out += table(header, rows)
    seconds = {lib: sum(r["seconds"] for r in acc["runs"] if r["library"] == lib)
               for lib in ("ptlib", "peft")}
    out += [f"Training wall time, all runs (shared machine, sequential, indicative): ptlib "
            f"{seconds['ptlib'] / 60:.1f} min, PEFT {seconds['peft'] / 60:.1f} min.", ""]
    goals["ptlib best test EM >= PEFT best test EM (average over tasks)"] = (
        avg["ptlib_best"] >= avg["peft_best"],
        f"{pct(avg['ptlib_best'])} vs {pct(avg['peft_best'])}")
    return out


def autoprompt_section(data: dict) -> list[str]:
    out = ["## Discrete search efficiency (`bench/autoprompt_efficiency.py`)", "",
           f"Command: `{data['command']}`. Task {data['task']}.", "",
           "### Batched candidate scoring vs one forward per candidate (interleaved)", ""]
    rows = []
    for item in data["scoring"]["by_k"].values():
        r = item["ratio_batched_over_naive"]
        rows.append([item["k"], item["batch_size"], item["forwards_batched"],
                     item["forwards_naive"], f"{r['median_of_round_ratios']:.2f}",
                     f"{r['ratio_of_medians']:.2f}", f"{item['max_abs_difference']:.1e}"])
    out += table(["K candidates", "batch", "forwards (batched)", "forwards (naive)",
                  "time batched / naive", "(ratio of medians)", "max |difference|"], rows)
    search = data["search"]
    out += ["### AutoPrompt vs random search at equal forward passes", "",
            f"Template `{search['template']}`, budget {search['max_forwards']} sequence "
            f"forwards (a backward counts as two), {search['num_candidates']} candidates per "
            f"iteration, batch {search['batch_size']}, seeds {search['seeds']}. Objective = "
            f"mean log P(y | x, P) of the best-on-dev prompt over all train facts. Manual "
            f"prompt `{search['manual_template']}`: test exact match (EM) "
            f"{pct(search['manual_test_exact_match'])}.", ""]
    rows = []
    for method, s in search["summary"].items():
        rows.append([method, f"{s['forwards']['mean']:.0f}", f"{s['iterations']['mean']:.0f}",
                     msd(s["train_objective"], 1.0, 3), msd(s["best_dev_exact_match"]),
                     msd(s["test_exact_match"])])
    out += table(["method", "forwards", "iterations", "train objective", "best dev EM (%)",
                  "test EM (%)"], rows)
    out += ["Prompts found: " + "; ".join(f"{r['method']} seed {r['seed']}: `{r['prompt']}`"
                                         for r in search["runs"]), ""]
    return out


def memory_section(data: dict) -> list[str]:
    out = ["## Peak resident memory (`bench/memory.py`)", "",
           f"Command: `{data['command']}`. Each case in a fresh process; `ru_maxrss`. Training: "
           f"{data['steps']} steps at batch {data['batch_size']} on {data['task']}.", ""]
    rows = [[case, f"{c['peak_mib']:.0f}",
             f"{c['over_load_mib']:.0f}" if "over_load_mib" in c else ""]
            for case, c in data["cases"].items()]
    return out + table(["case", "peak RSS (MiB)", "above model load (MiB)"], rows)


def old_rate_caveat(recorded: dict) -> str:
    """A sentence for a result whose matmul rate predates ``_common.MATMUL_RATE_METHOD``."""
    if recorded.get("matmul_rate_method"):
        return ""
    return (" This result predates the layer-weighted matmul rate (6eac6a3): its rate timed "
            "one layer's products beside the LM head's unweighted, which at small batches let "
            "the thin head product dominate (on the 2-core AVX2 CPU, fp32 at the study's batch: "
            "40 GFLOP/s against 96 weighted), so its fractions are not comparable with later "
            "ones until rerun.")


def roofline_section(data: dict, goals: dict) -> list[str]:
    out = ["## Where the CPU time goes (`bench/roofline.py`)", "",
           f"Command: `{data['command']}`. Template `{data['template']}`, capital_of; batch "
           f"sizes {data['batch_sizes']}, {data['candidates']} candidates; {data['rounds']} "
           "interleaved rounds, medians. Useful GFLOP/s counts real tokens only (padding "
           "excluded); the matmul rate is this machine's at the same shapes and dtype, "
           "measured in the same run. OpenMP wait policy: "
           f"{data.get('omp_wait_policy', 'not recorded')}." + old_rate_caveat(data), ""]
    rows = [[r["workload"], r["precision"], f"{r['seconds']:.3f}", f"{r['useful_gflops']:.1f}",
             f"{r['matmul_gflops']:.1f}", f"{r['fraction_of_matmul']:.2f}",
             f"{r['padding_share']:.2f}", f"{r['speedup_vs_fp32']:.2f}"] for r in data["rows"]]
    out += table(["workload", "precision", "median s", "useful GFLOP/s", "matmul GFLOP/s",
                  "fraction", "padding share", "speed-up vs fp32"], rows)
    for precision, ops in data["top_operators_train"].items():
        out += [f"Top operators of a training step, {precision}: "
                + ", ".join(f"{op['op']} {100 * op['share']:.0f}%" for op in ops[:5]) + ".", ""]
    # bf16 is opt-in (ptlib.precision: the default is fp32 until bf16 is shown to train as well)
    bf16 = next(r for r in data["rows"] if (r["workload"], r["precision"]) == ("train", "bf16"))
    goals["CPU training step in bf16 (opt-in) >= 1.8x the fp32 step"] = (
        bf16["speedup_vs_fp32"] >= 1.8, f"{bf16['speedup_vs_fp32']:.2f}x")
    goals["its useful rate >= 0.6 of the bf16 matmul rate"] = (
        bf16["fraction_of_matmul"] >= 0.6, f"{bf16['fraction_of_matmul']:.2f}"
        + (" (earlier rate method)" if old_rate_caveat(data) else ""))
    compiled = [r for r in data["rows"] if (r["workload"], r["precision"])
                == ("train", "bf16_compiled")]
    if compiled:  # opt-in on top of bf16: shown beside it
        goals["with the opt-in compile_layers too: useful rate >= 0.6"] = (
            compiled[0]["fraction_of_matmul"] >= 0.6, f"{compiled[0]['fraction_of_matmul']:.2f}, "
            f"{compiled[0]['speedup_vs_fp32']:.2f}x fp32")
    return out


def bf16_section(data: dict) -> list[str]:
    out = ["## bf16 against fp32 exact match (`bench/bf16_accuracy.py`)", "",
           f"Command: `{data['command']}`. `{data['template']}`, {data['recipe']}, seeds "
           f"{data['seeds']}; per-fact test outcomes paired on seeds and facts "
           f"(`ptlib.stats`). Margin for \"unchanged\": the 95% interval inside "
           f"+-{data['margin']}.", ""]
    few = len(data["seeds"]) < stats.MIN_SEEDS  # recorded before ptlib.stats refused them
    if few:
        out += [f"From {len(data['seeds'])} seeds there is no interval (`ptlib.stats` gives "
                f"none below {stats.MIN_SEEDS}; the run recorded them before it refused to), so "
                "no comparison below can be within the margin.", ""]
    rows = [["+".join(r["tasks"]), f"{r['fp32_em']:.3f}", f"{r['bf16_em']:.3f}",
             f"{r['difference']:+.3f}" + ("" if few else
                                          f" ({r['ci'][0]:+.3f} to {r['ci'][1]:+.3f})"),
             "no interval" if few else "yes" if r["within_margin"] else "**no**"]
            for r in data["comparisons"]]
    return out + table(["tasks", "fp32 EM", "bf16 EM", "bf16 - fp32 (95% CI)",
                        "within margin"], rows)


def gpu_section() -> list[str]:
    """The lent-GPU session (``bench/gpu_session.sh``) as recorded in ``bench/*_<GPU>.json``."""
    check = _gpu_file("gpu_check")
    if check is None:
        return []
    out = [f"## GPU (recorded on a lent {check['gpu']} by `bash bench/gpu_session.sh`; "
           "summarised from `bench/gpu_*_" f"{GPU_NAME}.json`, not rerun here)", "",
           f"torch {check['torch']}, transformers {check['transformers']}; random-init "
           "weights of the stated shapes. Every timed step is `ptlib.training.training_step`, "
           "which builds its batch from the facts (tokens cached per fact), packs it without "
           "padding (`ptlib.packing`) and syncs for the loss, as training does. Model FLOPs "
           "count real tokens only.", ""]
    out += table(["training run", "precision", "compile", "steps", "s/step (evals, compile)",
                  "loss first -> last 10", "LM unchanged"],
                 [[r["model"], r["precision"], r["compile"], r["steps"],
                   f"{r['seconds_per_step_incl_evals_and_compile']:.3f}",
                   f"{r['loss_first']:.2f} -> {r['loss_last']:.2f}",
                   r["lm_unchanged"] and r["lm_grads_none"]] for r in check["training_runs"]])
    out += ["", "bf16 vs fp32 dev NLL relative difference "
            f"{check['bf16_vs_fp32_dev_nll']['relative_difference']:.1e}.", "",
            "Throughput (MFU against 989 TFLOP/s dense bf16):", ""]
    out += table(["model", "batch", "seq len", "tokens/s", "TFLOP/s", "MFU", "peak GiB"],
                 [[t["model"], t["batch"], t["seq_len"], f"{t['tokens_per_s']:,.0f}",
                   f"{t['tflops']:.1f}", f"{100 * t['mfu']:.1f}%", f"{t['peak_mem_gib']:.1f}"]
                  for t in check["throughput"]])
    return out + _gpu_profile_lines() + _gpu_peft_lines() + _gpu_distributed_lines()


GPU_NAME = "nvidia_h200"  # the file suffix gpu_session.sh derived from nvidia-smi


def gpu_goals(goals: dict) -> None:
    """The MFU goal at the 1B shape on the course's rows, from the recorded GPU profile."""
    data = _gpu_file("gpu_profile")
    rows = {r["variant"]: r for r in data["rows"]} if data else {}
    for variant, label in (("plain, course rows", "GPU, 1B shape, batch 1,024 of the "
                            "course's rows: MFU >= 40%"),
                           ("compile_layers, course rows", "(not the default) the same with "
                            "the opt-in compile_layers")):
        if variant in rows:
            mfu = rows[variant]["mfu"]
            goals[label] = (mfu >= 0.4, f"{100 * mfu:.1f}% ({data['gpu']}, recorded)")


def _gpu_file(name: str) -> dict | None:
    return read_result(BENCH_DIR / f"{name}_{GPU_NAME}.json")


def _gpu_profile_lines() -> list[str]:
    data = _gpu_file("gpu_profile")
    if data is None:
        return []
    out = ["", f"Where the step goes ({data['model']}, bf16; `bench/gpu_profile.py`): the "
           "step's own matrix multiplies timed at its shapes in the same run give the "
           "machine's limit. \"One example a row\" is the padded layout (packing capacity 1), "
           "timed in the same run." + old_rate_caveat(data["rows"][0]), ""]
    out += table(["variant", "batch", "padded T", "packed rows x length", "real tokens",
                  "tokens/s", "MFU", "matmul TFLOP/s at these shapes",
                  "fraction of matmul rate"],
                 [[r["variant"], r["batch"], r["seq_len"],
                   f"{r['packed_rows']} x {r['packed_len']}", r["real_tokens"],
                   f"{r['tokens_per_s']:,.0f}", f"{100 * r['mfu']:.1f}%",
                   f"{r['matmul_tflops_at_these_shapes']:.0f}",
                   f"{r['fraction_of_matmul_rate']:.2f}"] for r in data["rows"]])
    for kind, profile in data["profile"].items():
        operators = [k for k in profile["top_self"] if k["self_device_ms"] > 0][:6]
        out += ["", f"Plain step, {kind}: {profile['step_s'] * 1e3:.0f} ms, the device busy "
                f"{profile['device_busy_s'] * 1e3:.0f} ms of it "
                f"({100 * profile['busy_fraction']:.0f}%); top operators by device time: "
                + "; ".join(f"{k['name']} {k['self_device_ms']:.1f} ms" for k in operators)
                + "."]
    return out + [f"Failed variants: {len(data['errors'])}."] if data["errors"] else out


def _gpu_peft_lines() -> list[str]:
    data = _gpu_file("gpu_peft_ratio")
    if data is None:
        return []
    out = ["", f"ptlib / PEFT step time on the GPU (`bench/gpu_peft_ratio.py`, {data['shape']} "
           f"shape, batch {data['batch_size']}, {data['rounds']} interleaved rounds of "
           f"{data['block']} steps; below 1 means ptlib is faster; defaults_vs_defaults: "
           f"ptlib's default then, precision `auto` = {data['ptlib_default_precision']}, "
           "against PEFT's):", ""]
    return out + table(["variant", "ptlib/PEFT (median of rounds)", "ptlib s/step",
                         "PEFT s/step"],
                        [[name, f"{r['median_of_round_ratios']:.2f}",
                          f"{r['median_step_s'][0]:.4f}", f"{r['median_step_s'][1]:.4f}"]
                         for name, r in data["ratios_ptlib_over_peft"].items()])


def _gpu_distributed_lines() -> list[str]:
    runs = [d for d in (_gpu_file("gpu_distributed"), _gpu_file("gpu_distributed_fsdp2")) if d]
    if not runs:
        return []
    out = ["", "Distributed path (`torchrun bench/gpu_distributed.py`, `ptlib.train` over every "
           "visible GPU):", ""]
    return out + table(["backend", "world", "LM sharded (FSDP2)", "steps", "s/step (evals)",
                        "loss first -> last", "peak GiB per rank"],
                       [[d["backend"], d["world"], d["shard_lm"], d["steps"],
                         f"{d['seconds_per_step_incl_evals']:.3f}",
                         f"{d['loss_first']:.2f} -> {d['loss_last']:.2f}",
                         ", ".join(f"{g:.2f}" for g in d["peak_gib_per_rank"])] for d in runs])


def describe(machine: dict) -> str:
    return (f"{machine['cpu']} ({', '.join(machine['cpu_flags'])}), {machine['cores']} cores, "
            f"Python {machine['python']}, torch {machine['torch']}, transformers "
            f"{machine['transformers']}, peft {machine.get('peft')}")


def measured_on() -> list[str]:
    """One line per machine the recorded CPU benchmarks ran on (a report re-rendered elsewhere
    names where the numbers were measured, not where it was written)."""
    machines = {}
    for name in BENCHMARKS:
        data = load(name)
        if data is not None:
            machines.setdefault(describe(data["machine"]), []).append(name)
    return [f"- Measured on: {where} ({', '.join(names)})" for where, names in machines.items()]


def render(quick: bool, runs: dict) -> str:
    machine = machine_info()
    lines = ["# ptlib benchmarks", "",
             "Generated by `bench/run_all.py`" + (" --quick (smoke test: numbers are not "
                                                  "meaningful)" if quick else "")
             + "; every number below comes from `bench/results/*.json`. CPU comparisons are "
             "interleaved in one process and reported as ratios (the machine is shared with "
             "other jobs, so absolute times are indicative only).", "",
             *measured_on(), f"- Report written {machine['date']}; command `python "
             "bench/run_all.py" + (" --quick" if quick else "") + "` (`make bench`)"]
    for name, (code, seconds) in runs.items():
        lines.append(f"- `{name}`: exit {code}, {seconds / 60:.1f} min")
    lines.append("")
    goals: dict = {}
    body: list[str] = []
    sections = {"roofline": lambda d: roofline_section(d, goals), "bf16_accuracy": bf16_section,
                "peft_vs_ptlib": lambda d: peft_section(d, goals),
                "autoprompt_efficiency": autoprompt_section, "memory": memory_section}
    for name in BENCHMARKS:
        data = load(name)
        if data is None:
            body += [f"## {name}", "", "No result file (the benchmark failed or was not run).",
                     ""]
            continue
        body += [f"<!-- {name}: measured {data['machine']['date']}, load average "
                 f"{data['machine']['load_average']} -->"] + sections[name](data)
    gpu_goals(goals)
    if goals:
        lines += ["## Goals", ""]
        lines += table(["goal", "met", "measured"],
                       [[g, "yes" if ok else "**no**", v] for g, (ok, v) in goals.items()])
    return "\n".join(lines + body + gpu_section() + long_measurements()) + "\n"


def long_measurements() -> list[str]:
    """The longer measurements, each with its own command and not rerun by ``make bench``: the
    summaries they wrote to ``bench/results/<name>.md`` (included) or link to."""
    out = ["## Longer measurements (their own commands; not rerun by `make bench`)", "",
           "- bf16 training diagnosis: `bench/results/bf16_diagnosis.md` "
           "(`python bench/bf16_diagnosis.py`)", ""]
    for name in LONG_MEASUREMENTS:
        summary = RESULTS_DIR / f"{name}.md"
        if summary.exists():
            out += ["#" + line if line.startswith("## ") else line
                    for line in summary.read_text().splitlines()] + [""]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="passed to every benchmark")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these")
    parser.add_argument("--report-only", action="store_true", help="just re-render RESULTS.md")
    parser.add_argument("--resume", action="store_true",
                        help="peft_vs_ptlib reuses the finished parts of an interrupted run")
    args = parser.parse_args(argv)
    runs = {}
    if not args.report_only:
        for name in args.only or BENCHMARKS:
            runs[name] = run(name, args.quick, args.resume)
    quick = any((load(n) or {}).get("quick") for n in BENCHMARKS)
    REPORT.write_text(render(quick, runs))
    print(f"wrote {REPORT}")
    return max((code for code, _ in runs.values()), default=0)


if __name__ == "__main__":
    sys.exit(main())
