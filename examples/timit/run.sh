#!/usr/bin/env bash
# TIMIT phone recognition for every input kind (log-mel, wav2vec, units, frozen BERT): acoustic
# models on the 39 folded phones, selected on the 50-speaker dev set, core test decoded and scored
# (PER, no LM, as the paper's table 4). Upstream checkpoints from examples/librispeech/run.sh.
# See README.md beside this file for the hyperparameters and where each comes from.
#
#   TIMIT=/data/timit examples/timit/run.sh [STAGE ...]
#
# Stages, in order (none named: all): manifests inputs am decode
# Environment: TIMIT (the corpus root, holding TRAIN/ and TEST/), WORK (outputs, default
# runs/timit), LIBRI (the librispeech recipe's WORK), SYSTEMS (default: the paper's rows, below);
# GPUS, NODES, LAUNCHER and DRY_RUN as in examples/librispeech/lib.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
source examples/librispeech/lib.sh "$@"
read -r -a SYSTEMS <<< "${SYSTEMS:-logmel wav2vec gumbel kmeans gumbel-bert-small kmeans-bert-small}"

if wants manifests; then
  run python -m manifests.timit "${TIMIT:?set TIMIT to the TIMIT corpus root}" --dest "$DATA" \
    --test-set core --phones 39 --workers 16
fi

if wants inputs; then
  upstream_inputs "${SYSTEMS[@]}"
fi

if wants am; then
  # The paper's budget: 1000 epochs at 16 utterances per update (3,696 utterances, 231 updates
  # an epoch); the optimizer is ours (the paper: wav2letter++, ASG, SGD with lr 0.12 and momentum
  # 0.9). The first run writes DATA/dict.phn.txt from the train phones.
  train_acoustic_models phn w2l_ctc_timit 16 231000 2000 per 2000
fi

if wants decode; then
  for system in "${SYSTEMS[@]}"; do
    for split in valid test; do decode "$system" viterbi "$split"; done
  done
  run python -m fairseq_vqw2v.cli.score "$WORK/results" --labels phn
fi
