"""Training on several processes (torchrun, gloo on this CPU) gives the one-process result.

Each global micro-batch is split across ranks and the gradient summed, so 2 processes must match
1 process, with the LM replicated or sharded by FSDP2, with a batch that does not divide evenly
(5 facts on 2 ranks), and a checkpoint written by 2 processes must resume in 1.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from ptlib import distributed
from ptlib.cli import main

RUN = ["train", "--model", "tiny", "--task", "capital_of", "--batch-size", "5",
       "--eval-every", "2", "--hidden-size", "16", "--precision", "fp32"]
TOLERANCE = 1e-5


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _torchrun(args: list[str], cwd: Path, processes: int = 2) -> str:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
               "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), *args]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600,
                          env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, f"torchrun failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _prompt(folder: Path):
    return load_file(folder / "prompt.safetensors")["prompt"]


def _metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one") / "run"
    assert main([*RUN, "--steps", "4", "--out", str(out)]) == 0
    return out


def _assert_same_run(folder: Path, reference: Path) -> None:
    difference = (_prompt(folder) - _prompt(reference)).abs().max().item()
    assert difference < TOLERANCE, f"prompt differs by {difference:.2e}"
    ours, theirs = _metrics(folder), _metrics(reference)
    assert ours["best_step"] == theirs["best_step"]
    assert ours["test"]["exact_match"] == theirs["test"]["exact_match"]
    assert ours["test"]["nll"] == pytest.approx(theirs["test"]["nll"], abs=TOLERANCE)


@pytest.mark.parametrize("sharded", [False, True], ids=["replicated-lm", "fsdp2-sharded-lm"])
def test_two_processes_match_one(one_process, tmp_path, sharded):
    flags = ["--shard-lm"] if sharded else []
    stdout = _torchrun(["-m", "ptlib", *RUN, "--steps", "4", "--out", "run", *flags], tmp_path)
    assert stdout.count('"command": "train"') == 1  # rank 0 alone prints
    _assert_same_run(tmp_path / "run", one_process)


def test_a_two_process_checkpoint_resumes_in_one_process(one_process, tmp_path):
    _torchrun(["-m", "ptlib", *RUN, "--steps", "2", "--out", "run"], tmp_path)
    assert main([*RUN, "--steps", "4", "--out", str(tmp_path / "run"), "--resume"]) == 0
    _assert_same_run(tmp_path / "run", one_process)


SHARD_PROBE = """
import json, torch
from ptlib import distributed, load_lm
ranks = distributed.init_from_env()
lm = load_lm("tiny")
full = sum(p.numel() for p in lm.model.parameters())
distributed.shard_lm(lm.model)
local = sum(p.to_local().numel() for p in lm.model.parameters())
assert lm.embeddings.shape == (lm.vocab_size, lm.width)  # gathered on demand
with open(f"rank{ranks.rank}.json", "w") as out:  # one file each: no interleaved stdout
    json.dump({"rank": ranks.rank, "full": full, "local": local}, out)
distributed.finish(ranks)
"""


def test_fsdp2_keeps_one_shard_of_the_lm_per_rank(tmp_path):
    (tmp_path / "probe.py").write_text(SHARD_PROBE)
    _torchrun(["probe.py"], tmp_path)
    rows = [json.loads(path.read_text()) for path in sorted(tmp_path.glob("rank*.json"))]
    assert sorted(row["rank"] for row in rows) == [0, 1]
    for row in rows:
        assert row["local"] <= row["full"] / 2 + 64  # one half, up to a padded shard row


def test_shards_cover_the_batch_in_order():
    items = list(range(7))
    parts = [distributed.shard(items, distributed.Ranks(rank, 3)) for rank in range(3)]
    assert parts == [[0, 1, 2], [3, 4], [5, 6]]
    assert distributed.shard([1], distributed.Ranks(1, 2)) == []
