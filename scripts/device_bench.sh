#!/usr/bin/env bash
# The GPU measurements of issue 10, as one call on a lent machine (the `device` tool), after
# scripts/device_wheels.sh has filled .device-wheels/ here:
#     run(command="scripts/device_bench.sh", carry=[".device-wheels"], timeout_s=540)
# Writes $OUT/bench.txt: the card, then pretraining (Gumbel arch, fp32 and bf16 autocast) and
# unit_bert_base (ours in bf16 autocast, fairseq in its --fp16) against fairseq's reference, with
# throughput ratios, peak memory and model FLOP utilisation. Prepared without a GPU: not yet run.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp}/bench.txt"
{
    python3 -m pip install -q --no-index --no-deps --no-build-isolation .device-wheels/* \
        || echo "wheel install failed"
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
    export PYTHONPATH="$PWD"
    for precision in "" "--autocast"; do
        timeout 150 python3 benchmarks/pretrain_vs_fairseq.py --device cuda $precision \
            --archs vq_wav2vec_gumbel --updates 10 --batch-size 8 --seconds 15
    done
    timeout 240 python3 benchmarks/bert_vs_fairseq.py --device cuda --bf16 --fairseq-fp16 \
        --layers 12 --dim 768 --ffn 3072 --heads 12 --tokens-per-sample 512 \
        --max-tokens 16384 --utterances 2000 --updates 20 --warmup 5
} 2>&1 | tee "$out"
