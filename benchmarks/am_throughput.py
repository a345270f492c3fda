"""Acoustic-model training throughput (audio seconds per second) for every input kind.

    python benchmarks/am_throughput.py [--corpus demo/corpus] [--updates 20] [--threads 2]

Trains ``w2l_ctc_tiny`` with Adam for ``--updates`` updates on the same batches for each input:
log-mel; wav2vec ``c``, units and BERT features computed on the fly by frozen upstreams
(``vq_wav2vec_tiny`` and ``unit_bert_tiny``, random weights: speed does not depend on them); and
units and BERT features read from the files quantize and featurize write. Prints the CPU model,
then one row per input with audio seconds per wall second and the ratio to log-mel.
"""

import argparse
import os
import platform
import sys
import tempfile
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "tests")]

from _checkpoint_util import save_vq_checkpoint  # noqa: E402

from fairseq_vqw2v.cli.featurize import main as featurize_main  # noqa: E402
from fairseq_vqw2v.cli.quantize import main as quantize_main  # noqa: E402
from fairseq_vqw2v.constants import FRAME_RATE  # noqa: E402
from fairseq_vqw2v.criterions.ctc_asr import CtcAsrConfig, CtcAsrCriterion  # noqa: E402
from fairseq_vqw2v.interop.roberta import unit_bert_checkpoint  # noqa: E402
from fairseq_vqw2v.models.unit_bert import UnitBertConfig, UnitBertModel  # noqa: E402
from fairseq_vqw2v.models.vq_wav2vec import VqWav2VecModel, arch_config  # noqa: E402
from fairseq_vqw2v.models.w2l_ctc import W2lCtcConfig, W2lCtcModel  # noqa: E402
from fairseq_vqw2v.precision import cpuinfo_field  # noqa: E402
from fairseq_vqw2v.tasks.asr import AsrConfig, AsrTask  # noqa: E402


def cpu_model() -> str:
    return cpuinfo_field("model name") or platform.processor() or "unknown CPU"


def write_upstreams(folder: str):
    """Random-weight vq_wav2vec_tiny and unit_bert_tiny checkpoints (and the BERT's dict.txt)."""
    torch.manual_seed(0)
    vq_cfg = arch_config("vq_wav2vec_tiny")
    save_vq_checkpoint(os.path.join(folder, "vq.pt"), VqWav2VecModel(vq_cfg), folder)
    tokens = [f"{a}-{b}" for a in range(vq_cfg.vq_vars) for b in range(vq_cfg.vq_vars)]
    with open(os.path.join(folder, "dict.txt"), "w") as f:
        f.write("".join(f"{t} 1\n" for t in tokens))
    cfg = UnitBertConfig(encoder_layers=2, encoder_embed_dim=128, encoder_ffn_embed_dim=512,
                         encoder_attention_heads=4, max_positions=256)
    bert = UnitBertModel(cfg, len(tokens) + 5, padding_idx=1)
    torch.save(unit_bert_checkpoint(cfg, bert.state_dict(), folder), os.path.join(folder, "bert.pt"))
    return os.path.join(folder, "vq.pt"), os.path.join(folder, "bert.pt")


def throughput(task_cfg: AsrConfig, split: str, updates: int, max_frames: int) -> float:
    """Audio seconds per wall second of ``updates`` training updates."""
    task = AsrTask.setup_task(task_cfg)
    task.load_dataset(split)
    dataset = task.dataset(split)
    torch.manual_seed(0)
    model_cfg = W2lCtcConfig(input=task_cfg.input, upstream=task_cfg.upstream, bert=task_cfg.bert)
    task.record_inputs(model_cfg)
    model = W2lCtcModel(model_cfg, len(task.target_dictionary)).train()
    criterion = CtcAsrCriterion(CtcAsrConfig(), task)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    batches = dataset.batch_by_size(dataset.ordered_indices(), max_tokens=max_frames)
    batches = [batches[i % len(batches)] for i in range(updates + 1)]
    seconds = 0.0
    start = None
    for step, batch in enumerate(batches):
        if step == 1:  # the first update warms up allocators and kernels
            start = time.perf_counter()
        sample = dataset.collater([dataset[i] for i in batch])
        loss, _, _ = criterion(model, sample)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step >= 1:
            seconds += float(dataset.sizes[batch].sum()) / FRAME_RATE
    return seconds / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default=os.path.join(REPO, "demo", "corpus"),
                        help="manifest folder with {split}.tsv + .ltr (make demo writes demo/corpus)")
    parser.add_argument("--split", default="valid")
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--max-frames", type=int, default=8000, help="frames (10 ms) per batch")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    if not os.path.exists(os.path.join(args.corpus, f"{args.split}.tsv")):
        sys.exit(f"{args.corpus}/{args.split}.tsv not found: run `make demo` (stage 0) or pass --corpus")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        vq, bert = write_upstreams(tmp)
        units, feats = os.path.join(tmp, "units"), os.path.join(tmp, "feats")
        quantize_main(["--checkpoint", vq, "--manifest-dir", args.corpus, "--splits", args.split, "--dest", units])
        featurize_main(["--vq-checkpoint", vq, "--bert-checkpoint", bert, "--manifest-dir", args.corpus,
                        "--split", args.split, "--dest", feats])
        common = dict(data=args.corpus, labels="ltr", upstream=vq, bert=bert)
        rows = [
            ("logmel", AsrConfig(input="logmel", **common)),
            ("wav2vec (on the fly)", AsrConfig(input="wav2vec", **common)),
            ("units (on the fly)", AsrConfig(input="units", **common)),
            ("units (quantize folder)", AsrConfig(input="units", units_dir=units, **common)),
            ("bert (on the fly)", AsrConfig(input="bert", **common)),
            ("bert (featurize folder)", AsrConfig(input="bert", features=feats, **common)),
        ]
        print(f"CPU: {cpu_model()}, {args.threads} threads; w2l_ctc_tiny, Adam, {args.updates} updates "
              f"of {args.max_frames} frames on {args.corpus}/{args.split}")
        print("| input | audio s / s | vs logmel |\n|---|---|---|")
        base = None
        for name, cfg in rows:
            speed = throughput(cfg, args.split, args.updates, args.max_frames)
            base = base or speed
            print(f"| {name} | {speed:.1f} | {speed / base:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
