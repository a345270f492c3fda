# Helpers shared by the corpus recipes (examples/{librispeech,wsj,timit}/run.sh); sourced, with
# the recipe's arguments (the stages to run), from the repository root.
#
# Environment: GPUS (per node, default 8), NODES (default 1), LAUNCHER (how fairseq-train starts
# its GPU processes, default fairseq):
#   fairseq   one node: fairseq-train --distributed-world-size GPUS spawns one process per GPU
#   torchrun  torchrun on every node (rendezvous at MASTER:PORT); fairseq reads RANK/WORLD_SIZE
#   slurm     srun, one task per node; fairseq finds the nodes from SLURM_* and spawns per GPU
# DRY_RUN=1 prints each command (shell-quoted, one per line) instead of running it: what
# tests/test_recipes.py parses with fairseq's own option parsers.

[ -d .venv/bin ] && export PATH="$PWD/.venv/bin:$PATH"
GPUS=${GPUS:-8}
NODES=${NODES:-1}
LAUNCHER=${LAUNCHER:-fairseq}
MASTER=${MASTER:-localhost}
PORT=${PORT:-29500}
WORLD=$(( GPUS * NODES ))
USER_DIR=$PWD/fairseq_vqw2v
STAGES=("$@")
WORK=${WORK:-runs/$(basename "$(dirname "$0")")}  # runs/librispeech, runs/wsj, runs/timit
DATA=$WORK/manifests

run() {  # COMMAND ARGS...: runs it, or prints it under DRY_RUN
  if [ -n "${DRY_RUN:-}" ]; then
    local line
    printf -v line '%q ' "$@"
    echo "$line"  # one write per command: background commands cannot interleave their lines
  else
    "$@"
  fi
}

per_gpu() {  # TOTAL: TOTAL / WORLD, at least 1 (a global batch or update count split over GPUs)
  local n=$(( $1 / WORLD ))
  echo $(( n > 0 ? n : 1 ))
}

train() {  # fairseq-train ARGS... on WORLD GPUs through LAUNCHER
  case "$LAUNCHER" in
    fairseq)
      [ "$NODES" = 1 ] || { echo "LAUNCHER=fairseq runs on one node; use torchrun or slurm" >&2; exit 2; }
      run fairseq-train "$@" --distributed-world-size "$WORLD" ;;
    torchrun)
      run torchrun --nnodes "$NODES" --nproc-per-node "$GPUS" --rdzv-backend c10d \
        --rdzv-endpoint "$MASTER:$PORT" "$(command -v fairseq-train || echo fairseq-train)" "$@" \
        --distributed-world-size "$WORLD" ;;
    slurm)
      run srun --nodes "$NODES" --ntasks-per-node 1 --gpus-per-node "$GPUS" fairseq-train "$@" \
        --distributed-world-size "$WORLD" --distributed-port "$PORT" ;;
    *) echo "LAUNCHER must be fairseq, torchrun or slurm, not $LAUNCHER" >&2; exit 2 ;;
  esac
}

wants() {  # STAGE: whether STAGE was asked for (no arguments to the recipe: every stage)
  [ ${#STAGES[@]} = 0 ] || [[ " ${STAGES[*]} " == *" $1 "* ]]
}

# --- acoustic-model recipes (wsj, timit): the paper's input kinds, from the librispeech recipe ---
# A system is logmel, wav2vec, a quantizer (gumbel, kmeans: its units) or QUANTIZER-bert-SIZE
# (frozen BERT features, e.g. kmeans-bert-small). Upstream checkpoints come from LIBRI (the
# librispeech recipe's WORK, default runs/librispeech).
LIBRI=${LIBRI:-runs/librispeech}

system_input() {  # SYSTEM: sets INPUT to the task flags that feed the acoustic model SYSTEM
  case "$1" in
    logmel) INPUT=(--input logmel) ;;
    wav2vec) INPUT=(--input wav2vec --upstream "$LIBRI/vq/wav2vec/checkpoint_best.pt") ;;
    gumbel|kmeans) INPUT=(--input units --units-dir "$WORK/units/$1") ;;
    *-bert-*) INPUT=(--input bert --features "$WORK/features/$1") ;;
    *) echo "unknown system $1 (logmel, wav2vec, gumbel, kmeans, QUANTIZER-bert-SIZE)" >&2; exit 2 ;;
  esac
}

upstream_inputs() {  # SYSTEM...: units (quantizers) and frozen BERT features of DATA's splits
  local system q split
  for system in "$@"; do
    case "$system" in
      gumbel|kmeans)
        run python -m fairseq_vqw2v.cli.quantize --vq-checkpoint "$LIBRI/vq/$system/checkpoint_best.pt" \
          --manifest-dir "$DATA" --splits train,valid,test --dest "$WORK/units/$system" --report \
          --device cuda ;;
      *-bert-*)
        q=${system%%-bert-*}
        run python -m fairseq_vqw2v.cli.featurize --vq-checkpoint "$LIBRI/vq/$q/checkpoint_best.pt" \
          --bert-checkpoint "$LIBRI/bert/$q-${system##*-bert-}/checkpoint_best.pt" \
          --manifest-dir "$DATA" --splits train,valid,test --dest "$WORK/features/$system" --device cuda ;;
    esac
  done
}

decode() {  # SYSTEM DECODER SPLIT FLAGS...: -> WORK/results/SYSTEM/DECODER/generate-SPLIT.txt
  local system=$1 decoder=$2 split=$3
  shift 3
  run fairseq-generate "$DATA" --user-dir "$USER_DIR" --task vqw2v_asr \
    --path "$WORK/am/$system/checkpoint_best.pt" --gen-subset "$split" --batch-size 16 \
    --decoder "$decoder" --results-path "$WORK/results/$system/$decoder" "$@"
}

train_acoustic_models() {  # LABELS ARCH BATCH UPDATES WARMUP METRIC EVERY: one model per SYSTEMS
  # BATCH utterances per update over all GPUs; validated and saved every EVERY updates, the best
  # on METRIC kept. Adam, its schedule and the clipping are ours (see the recipes' READMEs).
  local labels=$1 arch=$2 batch=$3 updates=$4 warmup=$5 metric=$6 every=$7 system
  for system in "${SYSTEMS[@]}"; do
    system_input "$system"
    train "$DATA" --user-dir "$USER_DIR" --task vqw2v_asr --labels "$labels" "${INPUT[@]}" \
      --arch "$arch" --criterion ctc_asr --batch-size "$(per_gpu "$batch")" \
      --max-update "$updates" --optimizer adam --adam-betas '(0.9, 0.98)' --lr 5e-04 \
      --lr-scheduler cosine --warmup-updates "$warmup" --warmup-init-lr 1e-07 --min-lr 1e-06 \
      --clip-norm 5.0 --num-workers 4 --best-checkpoint-metric "$metric" \
      --save-dir "$WORK/am/$system" --no-epoch-checkpoints --validate-interval-updates "$every" \
      --save-interval-updates "$every" --keep-interval-updates 1 --log-format json --log-interval 100
  done
}
