#!/usr/bin/env bash
# Wheels for a lent GPU machine (see benchmarks/README of issue 10 in README.md, "Benchmarks"):
# its image has Python 3.12, PyTorch, numpy 2 and no registry, so fairseq, numpy<2 (fairseq's
# masked_lm needs np.compat) and the audio/scoring modules the plugin imports travel as wheels in
# .device-wheels/ (ignored by git; pass it in the device tool's `carry`). Run here, once.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.device-wheels
rm -rf "$dest" && mkdir -p "$dest"
platform=(--python-version 3.12 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64
          --platform manylinux_2_28_x86_64 --only-binary=:all:)
python -m pip download -q --no-deps -d "$dest" "${platform[@]}" \
    "fairseq-fixed==0.12.3.1" "numpy<2" "hydra-core==1.3.2" "omegaconf==2.3.0" bitarray \
    soundfile cffi pycparser editdistance flashlight-text
# antlr4 4.9.3 (omegaconf's parser runtime) is published as source only: pure Python
python -m pip download -q --no-deps -d "$dest" --no-binary=:all: "antlr4-python3-runtime==4.9.3"
du -sh "$dest"
