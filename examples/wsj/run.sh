#!/usr/bin/env bash
# WSJ acoustic models on letters for every input kind (log-mel, wav2vec, units, frozen BERT), a
# word 4-gram and a char ConvLM on the WSJ LM text, weights tuned on nov93dev, nov92 decoded and
# scored: the paper's tables 1-3. Upstream checkpoints from examples/librispeech/run.sh.
# See README.md beside this file for the hyperparameters and where each comes from.
#
#   WSJ=/data/wsj WSJ_LISTINGS=/data/wsj/listings LM_TEXT=/data/wsj/lm.txt \
#     examples/wsj/run.sh [STAGE ...]
#
# Stages, in order (none named: all): manifests inputs am lm decode
# Environment: WSJ (root of the converted audio), WSJ_LISTINGS (folder of si284.tsv,
# nov93dev.tsv, nov92.tsv: UTT_ID<TAB>AUDIO<TAB>TRANSCRIPT, see manifests.wsj), LM_TEXT (the WSJ
# LM corpus, one sentence per line), WORK (outputs, default runs/wsj), LIBRI (the librispeech
# recipe's WORK), SYSTEMS (default: the paper's rows, below), CHARLM_SYSTEMS (decoded with the
# char ConvLM too, default gumbel-bert-base); GPUS, NODES, LAUNCHER and DRY_RUN as in
# examples/librispeech/lib.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
source examples/librispeech/lib.sh "$@"
read -r -a SYSTEMS <<< "${SYSTEMS:-logmel wav2vec gumbel kmeans gumbel-bert-base gumbel-bert-small kmeans-bert-base kmeans-bert-small}"
read -r -a CHARLM_SYSTEMS <<< "${CHARLM_SYSTEMS:-gumbel-bert-base}"

if wants manifests; then
  run python -m manifests.wsj "${WSJ:?set WSJ to the WSJ audio root}" --dest "$DATA" --workers 16 \
    --listing "train=${WSJ_LISTINGS:?set WSJ_LISTINGS}/si284.tsv" \
    --listing "valid=$WSJ_LISTINGS/nov93dev.tsv" --listing "test=$WSJ_LISTINGS/nov92.tsv"
fi

if wants inputs; then
  upstream_inputs "${SYSTEMS[@]}"
fi

if wants am; then
  # The paper's budget: 1000 epochs at 64 utterances per update (si284: 37,416 utterances, 585
  # updates an epoch); the optimizer is ours (the paper: wav2letter++, ASG, plain SGD with lr 5.6).
  # The first run writes DATA/dict.ltr.txt from the train letters.
  train_acoustic_models ltr w2l_ctc_wsj 64 585000 5000 wer 5000
fi

if wants lm; then
  # word 4-gram (KenLM) and its lexicon over every word of the LM text
  run python -m fairseq_vqw2v.cli.lm ngram "${LM_TEXT:?set LM_TEXT to the WSJ LM corpus}" "$WORK/lm" \
    --order 4 --letter-dict "$DATA/dict.ltr.txt"
  # char ConvLM: the LM text as letters (nov93dev transcripts for validation), binarized, and
  # Likhomanenko et al. (2019)'s 20B char ConvLM (wav2letter recipes/lexicon_free) trained by stock
  # fairseq. --sample-break-mode eos (theirs: complete): one sentence per sample, as the decoder
  # scores an utterance from the sentence start.
  run python -m fairseq_vqw2v.cli.lm charlm-data "$LM_TEXT" "$WORK/charlm" \
    --letter-dict "$DATA/dict.ltr.txt"
  run python -m fairseq_vqw2v.cli.lm charlm-data "$DATA/valid.wrd" "$WORK/charlm/valid"
  run fairseq-preprocess --only-source --srcdict "$WORK/charlm/dict.txt" \
    --trainpref "$WORK/charlm/train.txt" --validpref "$WORK/charlm/valid/train.txt" \
    --destdir "$WORK/charlm/bin" --workers 16
  train "$WORK/charlm/bin" --task language_modeling --arch fconv_lm --decoder-embed-dim 256 \
    --decoder-layers '[(512, 5)] + [(128, 1, 0), (128, 5, 0), (256, 1, 3)] * 3 + [(256, 1, 0), (256, 5, 0), (512, 1, 3)] * 3 + [(512, 1, 0), (512, 5, 0), (1024, 1, 3)] * 3 + [(1024, 1, 0), (1024, 5, 0), (2048, 1, 3)] * 9 + [(1024, 1, 0), (1024, 5, 0), (4096, 1, 3)]' \
    --decoder-out-embed-dim 256 --dropout 0.1 --weight-decay 1e-07 --criterion cross_entropy \
    --optimizer nag --lr 0.5 --lr-scheduler fixed --clip-norm 0.1 --max-epoch 16 \
    --max-tokens 512 --tokens-per-sample 512 --sample-break-mode eos --fp16 --seed 42 \
    --ddp-backend legacy_ddp --save-dir "$WORK/charlm/ckpt" --save-interval-updates 10000 \
    --keep-interval-updates 2 --log-format json --log-interval 100
fi

if wants decode; then
  # Greedy, then beam search with each LM: LM weight and word score tuned on nov93dev by random
  # search over the paper's ranges ([0, 5] and [-5, 5], 128 points); beam 500 is our choice.
  KENLM=(--lexicon "$WORK/lm/lexicon.txt" --decoder-lm "$WORK/lm/lm.bin" --beam 500)
  CHARLM=(--lexicon "$WORK/lm/lexicon.txt" --charlm-type fconv
          --decoder-lm "$WORK/charlm/ckpt/checkpoint_best.pt" --beam 500)
  SEARCH=(--lm-weights=0,5 --word-scores=-5,5 --random 128)
  for system in "${SYSTEMS[@]}"; do
    decoders=(kenlm)
    [[ " ${CHARLM_SYSTEMS[*]} " == *" $system "* ]] && decoders+=(charlm)
    for split in valid test; do decode "$system" viterbi "$split"; done
    for decoder in "${decoders[@]}"; do
      if [ "$decoder" = kenlm ]; then flags=("${KENLM[@]}"); else flags=("${CHARLM[@]}"); fi
      tuned="$WORK/results/$system/$decoder.tuned.json"
      run python -m fairseq_vqw2v.cli.tune --path "$WORK/am/$system/checkpoint_best.pt" \
        --data "$DATA" --subset valid --decoder "$decoder" "${flags[@]}" "${SEARCH[@]}" --out "$tuned"
      for split in valid test; do
        decode "$system" "$decoder" "$split" "${flags[@]}" --decoder-settings "$tuned"
      done
    done
  done
  run python -m fairseq_vqw2v.cli.score "$WORK/results" --labels ltr
fi
