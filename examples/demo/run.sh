#!/usr/bin/env bash
# The embedded demo: runs the pipeline on a corpus synthesized here with flite, no download.
# Called by `make demo` from the repository root (after `make setup`). Every stage is idempotent:
# a finished stage is skipped, an interrupted training resumes from its checkpoint_last.pt, and a
# stage that (re)trains removes the outputs downstream of it so that they are rebuilt to match.
#
# Environment overrides: DEMO_HOURS (train audio, default 1.0 h, plus 5 min each of valid and
# test), DEMO_SEED (default 1), DEMO_VQ_UPDATES (default 400), DEMO_BERT_UPDATES (default 400),
# DEMO_AM_UPDATES (default 800, each acoustic model).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
BIN=.venv/bin
DEMO=demo
HOURS=${DEMO_HOURS:-1.0}
SEED=${DEMO_SEED:-1}
VQ_UPDATES=${DEMO_VQ_UPDATES:-400}
BERT_UPDATES=${DEMO_BERT_UPDATES:-400}
AM_UPDATES=${DEMO_AM_UPDATES:-800}
USER_DIR=$PWD/fairseq_vqw2v
start=$(date +%s)
stage_start=$start
# fairseq-train resumed from a finished checkpoint still takes one more update (and so changes the
# model and every unit downstream): train only while the checkpoint is short of its target.
trained_to() {  # CHECKPOINT UPDATES
  [ -f "$1" ] && $PY -c "import sys
from fairseq_vqw2v.checkpoint import load_fairseq_checkpoint
state = load_fairseq_checkpoint(sys.argv[1])
sys.exit(state['optimizer_history'][-1]['num_updates'] < int(sys.argv[2]))" "$1" "$2" 2>/dev/null
}
stage_done() {
  local now; now=$(date +%s)
  echo "   ($1 done in $(( now - stage_start )) s)"
  stage_start=$now
}

echo "== stage 0: embedded corpus (flite) -> $DEMO/corpus"
$PY -m manifests.synth --out "$DEMO/corpus" --hours "$HOURS" --seed "$SEED"
stage_done "corpus"

# InfoNCE: with binary cross-entropy a run of a few hundred updates settles at the base-rate floor
# (constant logits, 4.83 bits), ours and fairseq's reference alike; InfoNCE has no such floor.
# The Gumbel quantizer of vq_wav2vec_tiny has a depth-1 logit projection (see the arch).
echo "== stage 1: vq-wav2vec pretraining (vq_wav2vec_tiny, Gumbel, $VQ_UPDATES updates) -> $DEMO/vq"
if trained_to "$DEMO/vq/checkpoint_last.pt" "$VQ_UPDATES"; then
  echo "   $DEMO/vq/checkpoint_last.pt already has $VQ_UPDATES updates"
else
  rm -rf "$DEMO/units" "$DEMO/bert" "$DEMO/features" "$DEMO/am/bert" "$DEMO/results/bert"
  $BIN/fairseq-train "$DEMO/corpus" --user-dir "$USER_DIR" --cpu --seed "$SEED" \
    --task vqw2v_pretraining --max-sample-size 48000 --min-sample-size 8000 \
    --arch vq_wav2vec_tiny --criterion vqw2v_contrastive --infonce --temp-schedule linear \
    --collapse-warn-after 200 --collapse-warn-interval 100 \
    --max-tokens 400000 --num-workers 0 --skip-invalid-size-inputs-valid-test \
    --optimizer adam --lr 1e-3 --lr-scheduler cosine --warmup-updates 30 --warmup-init-lr 1e-7 \
    --min-lr 1e-6 --max-update "$VQ_UPDATES" --validate-interval 1000 --validate-interval-updates 200 \
    --save-dir "$DEMO/vq" --no-epoch-checkpoints --save-interval 1000 --save-interval-updates 100 \
    --keep-interval-updates 1 --log-format simple --log-interval 50
fi
stage_done "pretraining"

echo "== stage 2: units -> $DEMO/units"
# dict.txt is written after every split's units: its presence marks a complete stage
if [ -f "$DEMO/units/dict.txt" ]; then
  echo "   $DEMO/units already complete"
else
  $PY -m fairseq_vqw2v.cli.quantize --checkpoint "$DEMO/vq/checkpoint_last.pt" \
    --manifest-dir "$DEMO/corpus" --splits train,valid,test --dest "$DEMO/units" --report
fi
stage_done "quantization"

echo "== stage 3: BERT on units (unit_bert_tiny, span masking p=0.05 M=10, $BERT_UPDATES updates) -> $DEMO/bert"
if trained_to "$DEMO/bert/checkpoint_last.pt" "$BERT_UPDATES"; then
  echo "   $DEMO/bert/checkpoint_last.pt already has $BERT_UPDATES updates"
else
  rm -rf "$DEMO/features" "$DEMO/am/bert" "$DEMO/results/bert"
  $BIN/fairseq-train "$DEMO/units" --user-dir "$USER_DIR" --cpu --seed "$SEED" \
    --task unit_mlm --arch unit_bert_tiny --criterion span_mlm --tokens-per-sample 256 \
    --max-tokens 8192 --num-workers 0 --optimizer adam --adam-betas '(0.9, 0.98)' \
    --lr 1e-3 --lr-scheduler polynomial_decay --warmup-updates 40 \
    --total-num-update "$BERT_UPDATES" --max-update "$BERT_UPDATES" \
    --validate-interval 1000 --validate-interval-updates 200 --save-dir "$DEMO/bert" \
    --no-epoch-checkpoints --save-interval 1000 --save-interval-updates 100 --keep-interval-updates 1 \
    --log-format simple --log-interval 50
fi
stage_done "BERT training"

echo "== stage 4: frozen-BERT features -> $DEMO/features"
for split in train valid test; do
  # {split}.lengths is written after the features: its presence marks a complete split
  [ -f "$DEMO/features/$split.lengths" ] && { echo "   $DEMO/features/$split already complete"; continue; }
  $PY -m fairseq_vqw2v.cli.featurize --vq-checkpoint "$DEMO/vq/checkpoint_last.pt" \
    --bert-checkpoint "$DEMO/bert/checkpoint_last.pt" --manifest-dir "$DEMO/corpus" \
    --split "$split" --dest "$DEMO/features"
done
stage_done "featurizing"

# Acoustic models on letters (CTC), each trained for the same number of updates, then decoded
# greedily (no LM) and with the word 4-gram (LM weight and word score tuned on valid).
train_am() {  # NAME FLAGS...
  local name=$1; shift
  if trained_to "$DEMO/am/$name/checkpoint_last.pt" "$AM_UPDATES"; then
    echo "   $DEMO/am/$name/checkpoint_last.pt already has $AM_UPDATES updates"
    return
  fi
  rm -rf "$DEMO/results/$name"
  $BIN/fairseq-train "$DEMO/corpus" --user-dir "$USER_DIR" --cpu --seed "$SEED" \
    --task vqw2v_asr --labels ltr "$@" --arch w2l_ctc_tiny --criterion ctc_asr \
    --max-tokens 12000 --num-workers 0 --optimizer adam --lr 2e-3 --lr-scheduler cosine \
    --warmup-updates 50 --warmup-init-lr 1e-7 --min-lr 1e-5 --max-update "$AM_UPDATES" \
    --validate-interval 1000 --validate-interval-updates "$(( AM_UPDATES / 4 ))" \
    --best-checkpoint-metric wer --save-dir "$DEMO/am/$name" --no-epoch-checkpoints \
    --save-interval 1000 --save-interval-updates 100 --keep-interval-updates 1 \
    --log-format simple --log-interval 50
}

decode() {  # NAME DECODER SPLIT FLAGS...: writes $DEMO/results/NAME/DECODER/generate-SPLIT.txt
  local name=$1 decoder=$2 split=$3; shift 3
  local out="$DEMO/results/$name/$decoder"
  [ -f "$out/generate-$split.txt" ] && return
  $BIN/fairseq-generate "$DEMO/corpus" --user-dir "$USER_DIR" --cpu --task vqw2v_asr \
    --path "$DEMO/am/$name/checkpoint_best.pt" --gen-subset "$split" --batch-size 16 \
    --decoder "$decoder" --results-path "$out" "$@" 2>&1 | grep "decoded" || true
}

echo "== stage 5: acoustic models (w2l_ctc_tiny, CTC on letters, $AM_UPDATES updates each) -> $DEMO/am"
echo "   log-mel filterbanks"
train_am logmel --input logmel
echo "   frozen BERT features (cached by stage 4)"
train_am bert --input bert --features "$DEMO/features"
stage_done "acoustic models"

echo "== stage 6: word 4-gram LM and lexicon from the corpus LM text -> $DEMO/lm"
if [ -f "$DEMO/lm/lm.bin" ]; then
  echo "   $DEMO/lm/lm.bin already built"
else
  $PY -m fairseq_vqw2v.cli.lm ngram "$DEMO/corpus/lm/lm.txt" "$DEMO/lm" --order 4 \
    --letter-dict "$DEMO/corpus/dict.ltr.txt"
fi
stage_done "LM"

echo "== stage 7: decoding valid and test, no LM and 4-gram LM (tuned on valid) -> $DEMO/results"
LM_FLAGS=(--lexicon "$DEMO/lm/lexicon.txt" --decoder-lm "$DEMO/lm/lm.bin" --beam 50)
for name in logmel bert; do
  for split in valid test; do decode "$name" viterbi "$split"; done
  tuned="$DEMO/results/$name/kenlm.tuned.json"
  if [ ! -f "$tuned" ]; then
    $PY -m fairseq_vqw2v.cli.tune --path "$DEMO/am/$name/checkpoint_best.pt" --data "$DEMO/corpus" \
      --subset valid --decoder kenlm "${LM_FLAGS[@]}" --lm-weights=0.5,1,2,3 --word-scores=-1,0,1,2 \
      --out "$tuned" | tail -1
  fi
  for split in valid test; do decode "$name" kenlm "$split" "${LM_FLAGS[@]}" --decoder-settings "$tuned"; done
done
$PY -m fairseq_vqw2v.cli.score "$DEMO/results" --labels ltr
stage_done "decoding"

echo "demo done in $(( $(date +%s) - start )) s: corpus $DEMO/corpus ($HOURS h, seed $SEED)," \
  "vq-wav2vec $DEMO/vq, units $DEMO/units (usage: $DEMO/units/train.usage.png)," \
  "BERT $DEMO/bert, features $DEMO/features, acoustic models $DEMO/am," \
  "results $DEMO/results/table.md (plot: $DEMO/results/table.png)"
