#!/usr/bin/env bash
# The GPU path of ptlib end to end, as ONE prepared run for a lent CUDA machine (device time is
# short; everything it needs is in the working tree plus .gpu_assets/).
#
#   make gpu-assets                 # here: SmolLM2's config.json + tokenizer.json -> .gpu_assets/
#   bash bench/gpu_session.sh       # there, with .gpu_assets/ carried along
#
# 1. bench/gpu_check.py       real ptlib.train runs on CUDA (plain and compile=True), bf16 vs
#                             fp32, throughput and MFU (SmolLM2 and ~1B Llama shapes, random init)
# 2. bench/gpu_profile.py     device busy time, top operators, packed against padded rows,
#                             long rows and ptlib's opt-in
#                             compile_layers at the 1B shape, against the matmul rate
# 3. bench/gpu_peft_ratio.py  ptlib / PEFT step time, each with its defaults, interleaved
# 4. bench/gpu_distributed.py torchrun over every visible GPU with nccl, replicated and FSDP2
#
# Each result lands as bench/<name>_<gpu>.json with its log beside it (and, bundled as
# gpu_results.tgz, in $OUT when the device tool provides one). Each step has a time limit, so
# one that hangs cannot eat the others' device time. Uses $PYTHON (default python3) with this
# checkout on PYTHONPATH, so the machine's own CUDA build of torch is used. A step that
# fails does not stop the others; the exit status says whether any failed.
set -u -o pipefail
assets=${ASSETS:-.gpu_assets}
py=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr 'A-Z ' 'a-z_' | tr -cd 'a-z0-9_')
gpus=$(nvidia-smi -L | wc -l)
failed=0

step() {  # step NAME SECONDS COMMAND...: run it with a time limit, log it, bundle the results
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s): $*"
    local started=$SECONDS
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "bench/${name}_${gpu}.log" || failed=1
    echo "== $name took $((SECONDS - started))s"
    if [ -n "${OUT:-}" ]; then  # one bundle, rewritten after each step (the tool returns 8 files)
        tar czf "$OUT/gpu_results.tgz" bench/*_"${gpu}".json bench/*_"${gpu}".log 2>/dev/null
    fi
}

nvidia-smi
"$py" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
step gpu_check 170 "$py" bench/gpu_check.py --assets "$assets" --out "bench/gpu_check_${gpu}.json"
step gpu_profile 230 "$py" bench/gpu_profile.py --assets "$assets" \
    --out "bench/gpu_profile_${gpu}.json"
if "$py" -c "import peft" 2>/dev/null; then
    step gpu_peft_ratio 80 "$py" bench/gpu_peft_ratio.py --assets "$assets" \
        --out "bench/gpu_peft_ratio_${gpu}.json"
else
    echo "== gpu_peft_ratio skipped: peft is not installed for $py"
fi
step gpu_distributed 50 "$py" -m torch.distributed.run --nproc-per-node "$gpus" \
    bench/gpu_distributed.py --assets "$assets" --out "bench/gpu_distributed_${gpu}.json"
step gpu_distributed_fsdp2 50 "$py" -m torch.distributed.run --nproc-per-node "$gpus" \
    bench/gpu_distributed.py --assets "$assets" --shard-lm \
    --out "bench/gpu_distributed_fsdp2_${gpu}.json"
exit $failed
