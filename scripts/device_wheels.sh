#!/usr/bin/env bash
# Wheels for a lent GPU machine (see docs/benchmarks.md): its image has Python 3.12,
# PyTorch, numpy 2, scipy and scikit-learn and no registry, so fairseq and the audio/scoring modules
# the plugin imports travel as wheels in .device-wheels/ (ignored by git; pass it in the device
# tool's `carry`). Not numpy<2: the image's scipy needs numpy 2 and fairseq imports it (through
# scikit-learn); benchmarks/bert_vs_fairseq.py gives fairseq's masked_lm the one numpy 1 name it
# uses (checked here in a numpy 2 environment). Run here, once.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.device-wheels
rm -rf "$dest" && mkdir -p "$dest"
platform=(--python-version 3.12 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64
          --platform manylinux_2_28_x86_64 --only-binary=:all:)
python -m pip download -q --no-deps -d "$dest" "${platform[@]}" \
    "fairseq-fixed==0.12.3.1" "hydra-core==1.3.2" "omegaconf==2.3.0" bitarray \
    soundfile cffi pycparser editdistance flashlight-text
# antlr4 4.9.3 (omegaconf's parser runtime) is published as source only: pure Python
python -m pip download -q --no-deps -d "$dest" --no-binary=:all: "antlr4-python3-runtime==4.9.3"
du -sh "$dest"
