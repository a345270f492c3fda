# fairseq-train flags of the three trainings, for torchrun.sh and slurm.sbatch beside this file
# (sourced from the repository root). The values are the corpus recipes' (examples/librispeech
# pretrain and bert, examples/wsj acoustic model on log-mel input); the global batch stays the
# recipes' whatever the number of processes, through --update-freq or --batch-size (per_gpu).
source examples/librispeech/lib.sh  # GPUS, NODES, MASTER, PORT, WORLD, USER_DIR, run, per_gpu

stage_flags() {  # STAGE (pretrain, bert, am) DEVICE (gpu, cpu): sets FLAGS
  case "$1" in
    pretrain)
      FLAGS=(--task vqw2v_pretraining --arch vq_wav2vec_gumbel --criterion vqw2v_contrastive
        --max-sample-size 150000 --min-sample-size 32000 --max-tokens 300000
        --update-freq "$(per_gpu 16)" --max-update 400000 --optimizer adam --lr 1e-05
        --lr-scheduler cosine --warmup-updates 1000 --warmup-init-lr 1e-07 --min-lr 1e-06
        --stop-min-lr 1e-09 --prediction-steps 12 --seed 2 --num-workers 6
        --skip-invalid-size-inputs-valid-test --save-interval 1) ;;
    bert)
      FLAGS=(--task unit_mlm --arch unit_bert_base --criterion span_mlm --mask-prob 0.05
        --mask-length 10 --tokens-per-sample 512 --max-tokens 3072 --update-freq "$(per_gpu 128)"
        --optimizer adam --adam-betas '(0.9, 0.98)' --adam-eps 1e-06 --weight-decay 0.01
        --lr 1e-05 --lr-scheduler polynomial_decay --warmup-updates 10000
        --total-num-update 250000 --max-update 250000 --num-workers 4
        --save-interval-updates 10000 --keep-interval-updates 2) ;;
    am)
      FLAGS=(--task vqw2v_asr --labels ltr --input logmel --arch w2l_ctc_wsj --criterion ctc_asr
        --batch-size "$(per_gpu 64)" --max-update 585000 --optimizer adam --adam-betas '(0.9, 0.98)'
        --lr 5e-04 --lr-scheduler cosine --warmup-updates 5000 --warmup-init-lr 1e-07
        --min-lr 1e-06 --clip-norm 5.0 --num-workers 4 --best-checkpoint-metric wer
        --validate-interval-updates 5000 --save-interval-updates 5000 --keep-interval-updates 1) ;;
    *) echo "STAGE must be pretrain, bert or am, not $1" >&2; exit 2 ;;
  esac
  # every process reads the checkpoint it resumes from: fairseq's rank 0 would send it to the
  # others, which torch >= 2.6 refuses to unpickle (its config is an omegaconf object)
  FLAGS=(--user-dir "$USER_DIR" "${FLAGS[@]}" --no-epoch-checkpoints --log-format json
    --log-interval 200 --load-checkpoint-on-all-dp-ranks)
  case "$2" in
    # torch's DistributedDataParallel (c10d) takes the GPU of each process; fp16 as the recipes
    gpu) FLAGS+=(--distributed-backend nccl --ddp-backend c10d)
         [ "$1" = am ] || FLAGS+=(--fp16) ;;
    # c10d refuses a CPU model: fairseq's own legacy_ddp all-reduces the gradients over gloo
    cpu) FLAGS+=(--cpu --distributed-backend gloo --ddp-backend legacy_ddp) ;;
    *) echo "DEVICE must be gpu or cpu, not $2" >&2; exit 2 ;;
  esac
}
