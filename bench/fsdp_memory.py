"""Frozen-LM memory per rank: replicated against sharded by FSDP2 (``ptlib.distributed``).

Run under torchrun: ``torchrun --nproc-per-node 2 bench/fsdp_memory.py --out FILE.json``.
Measured: the parameter bytes each rank holds for a random-init SmolLM2-135M-shaped model, fp32,
replicated and after ``shard_lm``. Computed (no weights are built): the same for the ~1B Llama
shape of ``bench/gpu_check.py`` in bf16 at 2, 4 and 8 ranks, from its parameter shapes on the
meta device (FSDP2 shards each parameter along dim 0, padding it to a multiple of the ranks).
"""

import argparse
import json
import math
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from ptlib import distributed
from ptlib.model import byte_tokenizer, random_lm

SMOLLM2 = {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
           "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152,
           "max_position_embeddings": 8192, "tie_word_embeddings": True}
LLAMA_1B = {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
            "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 49152,
            "max_position_embeddings": 2048, "tie_word_embeddings": True}
GIB = 2**30


def held_bytes(model: torch.nn.Module) -> int:
    """Bytes of the parameters this rank holds (its shards, for a sharded model)."""
    tensors = [getattr(p, "to_local", lambda p=p: p)() for p in model.parameters()]
    return sum(t.numel() * t.element_size() for t in tensors)


def computed_per_rank(config: dict, world: int, bytes_per_value: int) -> float:
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(LlamaConfig(**config))
    rows = sum(math.ceil(p.shape[0] / world) * p[0].numel() for p in model.parameters())
    return rows * bytes_per_value / GIB


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    ranks = distributed.init_from_env()
    lm = random_lm(LlamaConfig(**SMOLLM2), byte_tokenizer(), name="smollm2-shape")
    replicated = held_bytes(lm.model) / GIB
    distributed.shard_lm(lm.model)
    sharded = held_bytes(lm.model) / GIB
    rows = distributed.all_gather({"rank": ranks.rank, "replicated_gib": replicated,
                                   "sharded_gib": sharded}, ranks)
    if ranks.is_main:
        report = {"measured_smollm2_shape_fp32": rows, "world": ranks.world,
                  "computed_llama_1b_bf16": {
                      str(n): {"replicated_gib": computed_per_rank(LLAMA_1B, 1, 2),
                               "sharded_gib": computed_per_rank(LLAMA_1B, n, 2)}
                      for n in (2, 4, 8)}}
        print(json.dumps(report, indent=2))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    distributed.finish(ranks)


if __name__ == "__main__":
    main()
