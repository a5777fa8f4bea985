"""What the machine is: its CPU's bf16 support and the facts a timing record needs.

One place for both, so the precision default (``ptlib.precision``), the study's records and
the benchmarks describe the machine the same way.
"""

import functools
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

MATRIX_FLAGS = {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}


def cpuinfo_field(name: str) -> str:
    """The value of the first ``name`` line of /proc/cpuinfo ("" where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(name):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


@functools.cache
def native_bf16(device_type: str) -> bool:
    """True where bf16 matrix multiplies run natively: CUDA, and CPUs with AVX512-BF16 or AMX
    (read from /proc/cpuinfo; False where it cannot be read)."""
    if device_type == "cuda":
        return True
    if device_type != "cpu":
        return False
    return bool(set(cpuinfo_field("flags").split()) & {"avx512_bf16", "amx_bf16"})


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or what platform knows)."""
    return cpuinfo_field("model name") or platform.processor() or "unknown"


def machine_info() -> dict:
    """Where a run ran: CPU and its matrix flags, cores, threads, library versions, the time
    and the load, enough to compare wall times between records."""
    import torch
    import transformers

    return {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_flags": sorted(set(cpuinfo_field("flags").split()) & MATRIX_FLAGS),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
