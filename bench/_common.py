"""Helpers shared by the CPU benchmarks: machine facts, JSON results, interleaved timing.

Not a benchmark itself. Every comparison on a shared machine is timed *interleaved*: the
contenders take turns in short blocks inside one process, so a burst of load from another job
hits them alike, and results are reported as ratios, never as absolute times from separate runs.
"""

import hashlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from ptlib.model import cpuinfo_field  # noqa: E402  (after the offline switches)
from ptlib.sweep import summarise  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"


def ptlib_fingerprint() -> str:
    """A hash of ptlib's source files. A benchmark that resumes from its recorded runs reuses
    only those recorded under the same hash: after any change to ptlib they are run again."""
    import ptlib

    digest = hashlib.sha256()
    for path in sorted(Path(ptlib.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or what platform knows)."""
    return cpuinfo_field("model name") or platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    """The matrix-relevant CPU flags (AVX-512 bf16, AMX) from /proc/cpuinfo."""
    wanted = {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
    return sorted(flag for flag in cpuinfo_field("flags").split() if flag in wanted)


def machine_info() -> dict:
    """CPU, cores, library versions and the time of the run."""
    import torch
    import transformers

    try:
        import peft

        peft_version = peft.__version__
    except ImportError:
        peft_version = None
    return {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft_version,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average": list(os.getloadavg()),
    }


def write_result(name: str, data: dict) -> Path:
    """Write ``bench/results/<name>.json`` (with machine facts) and return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {"benchmark": name, "machine": machine_info()} | data
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path.relative_to(BENCH_DIR.parent)}")
    return path


def interleave(contenders: dict[str, Callable[[int], list[float]]], rounds: int, block: int,
               warmup: int = 1) -> dict[str, list[list[float]]]:
    """Time contenders in turns: each round runs ``block`` steps of every contender in order.

    ``contenders[name](n)`` runs n steps and returns n per-step durations in seconds. The
    first ``warmup`` steps of each contender are run once before the timed rounds and dropped.
    The order inside a round alternates direction each round (A B C, C B A, ...) so no
    contender always follows the same one. Returns, per contender, one list of durations per
    round.
    """
    names = list(contenders)
    if warmup:
        for name in names:
            contenders[name](warmup)
    times: dict[str, list[list[float]]] = {name: [] for name in names}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            times[name].append(list(contenders[name](block)))
        print(f"  round {r + 1}/{rounds} done", flush=True)
    return times


def ratio_stats(numerator: list[list[float]], denominator: list[list[float]]) -> dict:
    """Ratio of two contenders' step times from interleaved rounds.

    ``median_of_round_ratios``: per round, mean(A) / mean(B), then the median over rounds (the
    headline: each round's pair ran close together in time). ``ratio_of_medians``: median
    step of A over median step of B over all steps. Both step medians are reported too.
    """
    per_round = [statistics.fmean(a) / statistics.fmean(b)
                 for a, b in zip(numerator, denominator, strict=True)]
    flat_a = [t for block in numerator for t in block]
    flat_b = [t for block in denominator for t in block]
    return {
        "median_of_round_ratios": statistics.median(per_round),
        "round_ratios": per_round,
        "ratio_of_medians": statistics.median(flat_a) / statistics.median(flat_b),
        "median_step_s": [statistics.median(flat_a), statistics.median(flat_b)],
    }


class Stopwatch:
    """``with Stopwatch() as w: ...`` then ``w.seconds``."""

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        return False


def mean_sd(values: list[float]) -> dict:
    """``ptlib.sweep.summarise`` (mean, sample sd, min, max, n) plus the values themselves."""
    return summarise(values) | {"values": list(values)}
