#!/usr/bin/env bash
# vq-wav2vec and BERT on LibriSpeech 960 h (the paper's stages 1-3): manifests, pretraining
# (Gumbel, k-means and continuous wav2vec), sharded quantization, BERT base and small on the units.
# See README.md beside this file for the hyperparameters and where each comes from.
#
#   LIBRISPEECH=/data/LibriSpeech examples/librispeech/run.sh [STAGE ...]
#
# Stages, in order (none named: all): manifests pretrain quantize bert
# Environment: LIBRISPEECH (the corpus root, holding train-clean-100/ ... dev-other/), WORK
# (outputs, default runs/librispeech), SCHEDULE (pretraining: fairseq = the README recipe of the
# released checkpoints, default; paper = the paper's section 4.2), MODELS (default
# "gumbel kmeans wav2vec"), BERTS (default "base small"), SHARDS (quantize processes, default
# GPUS); GPUS, NODES, LAUNCHER and DRY_RUN as in lib.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
source examples/librispeech/lib.sh "$@"
LIBRISPEECH=${LIBRISPEECH:?set LIBRISPEECH to the LibriSpeech corpus root}
SCHEDULE=${SCHEDULE:-fairseq}
read -r -a MODELS <<< "${MODELS:-gumbel kmeans wav2vec}"
read -r -a BERTS <<< "${BERTS:-base small}"
SHARDS=${SHARDS:-$GPUS}

if wants manifests; then
  # 960 h for training; dev-other as valid (fairseq's wav2vec recipes validate on a held-out set)
  run python -m manifests.librispeech "$LIBRISPEECH" --dest "$DATA" --workers 16 \
    --splits train=train-clean-100+train-clean-360+train-other-500,valid=dev-other
fi

# The optimisation of the two schedules (the model is the arch's in both)
case "$SCHEDULE" in
  fairseq)  # examples/wav2vec/README.md: released vq-wav2vec(_kmeans).pt, 16 GPUs x 300 k samples
    OPTIM=(--lr 1e-05 --warmup-updates 1000 --max-tokens 300000 --prediction-steps 12
           --update-freq "$(per_gpu 16)" --seed 2) ;;
  paper)  # section 4.2: 8 GPUs x 10 crops of 150 k samples, lr 1e-7 -> 5e-3 in 500 updates, K = 8
    OPTIM=(--lr 5e-03 --warmup-updates 500 --max-tokens 1500000 --prediction-steps 8
           --update-freq "$(per_gpu 8)" --temp-schedule linear) ;;
  *) echo "SCHEDULE must be fairseq or paper, not $SCHEDULE" >&2; exit 2 ;;
esac

if wants pretrain; then
  for model in "${MODELS[@]}"; do
    case "$model" in
      gumbel) MODEL=(--arch vq_wav2vec_gumbel) ;;
      kmeans) MODEL=(--arch vq_wav2vec_kmeans --loss-weights '[1]') ;;  # codebook + 0.25 commitment
      wav2vec) MODEL=(--arch vq_wav2vec_gumbel --vq-type none) ;;  # the paper's continuous row
      *) echo "unknown model $model (gumbel, kmeans or wav2vec)" >&2; exit 2 ;;
    esac
    train "$DATA" --user-dir "$USER_DIR" --task vqw2v_pretraining --criterion vqw2v_contrastive \
      "${MODEL[@]}" --max-sample-size 150000 --min-sample-size 32000 --max-update 400000 \
      --optimizer adam --lr-scheduler cosine --warmup-init-lr 1e-07 --min-lr 1e-06 \
      --stop-min-lr 1e-09 "${OPTIM[@]}" --fp16 --num-workers 6 \
      --skip-invalid-size-inputs-valid-test --save-dir "$WORK/vq/$model" --save-interval 1 \
      --no-epoch-checkpoints --log-format json --log-interval 200
  done
fi

QUANTIZERS=()
for model in "${MODELS[@]}"; do [ "$model" = wav2vec ] || QUANTIZERS+=("$model"); done

if wants quantize; then
  # one process per shard (one per GPU of this node), then the shards are joined
  for q in "${QUANTIZERS[@]}"; do
    for (( i = 0; i < SHARDS; i++ )); do
      run python -m fairseq_vqw2v.cli.quantize --vq-checkpoint "$WORK/vq/$q/checkpoint_best.pt" \
        --manifest-dir "$DATA" --splits train,valid --dest "$WORK/units/$q" \
        --shard "$i" --num-shards "$SHARDS" --device "cuda:$(( i % GPUS ))" &
    done
    wait
    run python -m fairseq_vqw2v.cli.quantize --merge --num-shards "$SHARDS" \
      --dest "$WORK/units/$q" --splits train,valid
    # binarized units load in seconds where the text takes minutes (unit_mlm prefers them)
    run fairseq-preprocess --only-source --srcdict "$WORK/units/$q/dict.txt" \
      --trainpref "$WORK/units/$q/train.src" --validpref "$WORK/units/$q/valid.src" \
      --destdir "$WORK/units/$q" --workers 16
  done
fi

if wants bert; then
  # The paper's BERT base: 128 GPUs x 3072 tokens (393 k tokens per update), 250 k updates,
  # warm-up over 10 k updates to 1e-5 then linear decay; span masking p = 0.05, M = 10.
  for q in "${QUANTIZERS[@]}"; do
    for size in "${BERTS[@]}"; do
      train "$WORK/units/$q" --user-dir "$USER_DIR" --task unit_mlm --criterion span_mlm \
        --arch "unit_bert_$size" --mask-prob 0.05 --mask-length 10 --tokens-per-sample 512 \
        --max-tokens 3072 --update-freq "$(per_gpu 128)" --optimizer adam \
        --adam-betas '(0.9, 0.98)' --adam-eps 1e-06 --weight-decay 0.01 \
        --lr 1e-05 --lr-scheduler polynomial_decay --warmup-updates 10000 \
        --total-num-update 250000 --max-update 250000 --fp16 --num-workers 4 \
        --save-dir "$WORK/bert/$q-$size" --save-interval-updates 10000 --keep-interval-updates 2 \
        --no-epoch-checkpoints --log-format json --log-interval 200
    done
  done
fi
