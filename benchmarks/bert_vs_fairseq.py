"""BERT-on-units training speed and memory: ours (``unit_mlm`` + ``unit_bert`` + ``span_mlm``) vs
fairseq's ``masked_lm`` + ``roberta`` + ``masked_lm`` criterion.

Both run through ``fairseq-train`` on the same unit corpus (fairseq binarized, one utterance per
sample: ``--sample-break-mode eos`` for masked_lm), with the same model size, masking rule
(paper spans: masked_lm's ``--mask-prob 0.5 --mask-multiple-length 10``, ours ``--mask-prob 0.05
--mask-length 10``, mask only), optimizer, batch size and number of updates; validation and
checkpointing are off.

Throughput is tokens per CPU second (fairseq's ``ntokens``, framing included, over the CPU time
of each update, ``time.process_time``). Both trainings run in this process through fairseq's own
Trainer (``tests/_train_util.py``), built from the same fairseq-train command lines, and their
updates alternate one for one after ``--warmup`` updates each: this shared machine's speed drifts
by 30% within minutes, and alternating puts both under the same drift (separate processes
measured minutes apart gave ratios from 0.6x to 1.1x for the same code). With ``--threads 1``
(default) that is single-core throughput. Peak memory is each training's max RSS in a process of
its own (fairseq-train, ``--updates`` updates). ``--device cuda`` times wall seconds once the GPU
has finished, reports each training's largest step peak of allocated memory over its resident
weights and optimizer state, and model FLOP utilisation (MFU: the matrix products' FLOPs per
token, counted with torch's FlopCounterMode, times tokens per second, over the card's data-sheet
peak in ``_device.py``); ``--fairseq-fp16`` runs the reference in its --fp16 there. For
``unit_bert_base`` itself: ``--layers 12 --dim 768 --ffn 3072 --heads 12``.

    python benchmarks/bert_vs_fairseq.py [--updates 30] [--layers 4 --dim 256 --ffn 1024 --heads 4]
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks"), str(ROOT / "tests")]

from _train_util import batches, build_trainer  # noqa: E402
from _device import device_name, peak_tflops, timed  # noqa: E402
from fairseq.logging import metrics  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

if not hasattr(np, "compat"):
    # numpy 2 (a GPU machine's image, whose scipy needs it) removed np.compat, which fairseq's
    # TokenBlockDataset names for masked_lm's eos break mode; the reference needs only this alias
    from types import SimpleNamespace

    np.compat = SimpleNamespace(long=np.int64)

from fairseq_vqw2v.data.unit_files import (  # noqa: E402
    codes_to_tokens,
    write_dictionary,
    write_unit_lines,
)


def write_corpus(folder: Path, utterances: int, max_tokens: int, seed: int = 0) -> None:
    """Unit lines like a G=2 quantizer's output: 2 x 64 codes, slowly varying, 1 s at 100 Hz up
    to ``max_tokens`` units. Every line fits the crop with its bos and eos: fairseq's masked_lm
    drops a longer line where ours crops it, and the two would then train on different lengths
    (with 1..6 s lines fairseq kept a third of them, the shortest)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(utterances):
        n = int(rng.integers(100, max_tokens + 1))
        # codes persist for a few frames, as speech units do
        change = rng.random((n, 2)) < 0.3
        codes = np.cumsum(change * rng.integers(1, 64, (n, 2)), axis=0) % 64
        lines.append(codes_to_tokens(torch.from_numpy(codes)))
    counts = write_unit_lines(str(folder / "train.src"), lines)
    write_dictionary(str(folder / "dict.txt"), counts)


def peak_rss(cmd, threads) -> float:
    """Max RSS in MiB of a fairseq-train process running ``cmd``."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    log = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{log[-3000:]}")
    return usage.ru_maxrss / 1024


def interleaved_throughput(argvs, warmup: int, updates: int, device: torch.device):
    """Per training (name -> fairseq-train arguments): tokens per second of work (CPU seconds on
    CPU, wall seconds on a GPU; see ``_device.timed``), with the updates of all alternating one
    for one after ``warmup`` updates each, and on a GPU the largest step peak of allocated memory
    over the resident weights and optimizer state. Also returns the model FLOPs per token (matrix
    products, forward and backward, counted on the last warm-up update of the first training)."""
    trainers = {name: build_trainer(argv) for name, argv in argvs.items()}
    streams = {name: batches(trainer) for name, trainer in trainers.items()}
    tokens = dict.fromkeys(trainers, 0)
    seconds = dict.fromkeys(trainers, 0.0)
    peaks = dict.fromkeys(trainers, 0.0)
    first = next(iter(trainers))
    flops_per_token = None
    for step in range(warmup + updates):
        for name, trainer in trainers.items():
            sample = next(streams[name])
            if name == first and step == warmup - 1:
                with FlopCounterMode(display=False) as counter, metrics.aggregate(new_root=True):
                    trainer.train_step([sample])
                flops_per_token = counter.get_total_flops() / sample["ntokens"]
                continue
            with timed(device) as took, metrics.aggregate(new_root=True):
                trainer.train_step([sample])
            if step >= warmup:
                seconds[name] += took["seconds"]
                tokens[name] += sample["ntokens"]
                peaks[name] = max(peaks[name], took["peak_mib"] or 0.0)
    return ({name: tokens[name] / seconds[name] for name in trainers}, peaks, flops_per_token)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=30, help="timed updates of each")
    parser.add_argument("--warmup", type=int, default=3, help="untimed first updates of each")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--ffn", type=int, default=1024)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--tokens-per-sample", type=int, default=256)
    parser.add_argument("--utterances", type=int, default=400)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bf16", action="store_true",
                        help="ours under --autocast bf16 (fairseq's masked_lm stays fp32: its --bf16 "
                        "is TPU-only)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--fairseq-fp16", action="store_true",
                        help="fairseq in its --fp16 (CUDA), its fastest GPU mode")
    args = parser.parse_args()
    if args.warmup < 1:
        parser.error("--warmup must be at least 1 (its last update counts the model FLOPs)")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_corpus(tmp / "units", args.utterances, args.tokens_per_sample - 2)
        subprocess.run(
            [sys.executable, "-m", "fairseq_cli.preprocess", "--only-source",
             "--srcdict", str(tmp / "units" / "dict.txt"),
             "--trainpref", str(tmp / "units" / "train.src"), "--destdir", str(tmp / "bin"),
             "--workers", "1"],
            check=True, capture_output=True,
        )
        (tmp / "bin" / "dict.txt").write_text((tmp / "units" / "dict.txt").read_text())
        common = [
            str(tmp / "bin"), "--encoder-layers", str(args.layers),
            "--encoder-embed-dim", str(args.dim), "--encoder-ffn-embed-dim", str(args.ffn),
            "--encoder-attention-heads", str(args.heads), "--dropout", "0.1",
            "--attention-dropout", "0.1", "--tokens-per-sample", str(args.tokens_per_sample),
            "--max-positions", str(args.tokens_per_sample), "--optimizer", "adam", "--lr", "1e-4",
            "--max-tokens", str(args.max_tokens), *(["--cpu"] if args.device == "cpu" else []),
            "--disable-validation", "--no-save", "--log-format", "simple",
            "--log-interval", "1", "--num-workers", "0", "--seed", "1",
        ]
        argvs = {
            "fairseq": [*common, "--task", "masked_lm", "--arch", "roberta_base",
                        "--criterion", "masked_lm", "--sample-break-mode", "eos",
                        "--mask-prob", "0.5", "--mask-multiple-length", "10",
                        *(["--fp16"] if args.fairseq_fp16 else [])],
            "ours": [*common, "--user-dir", str(ROOT / "fairseq_vqw2v"), "--task", "unit_mlm",
                     "--arch", "unit_bert_base", "--criterion", "span_mlm", "--mask-prob", "0.05",
                     "--mask-length", "10", *(["--autocast", "bf16"] if args.bf16 else [])],
        }
        device = torch.device(args.device)
        train = [sys.executable, "-m", "fairseq_cli.train", "--max-update", str(args.updates)]
        # first: a child's max RSS starts from this process's size at the fork
        rss = ({name: peak_rss([*train, *argv], args.threads) for name, argv in argvs.items()}
               if device.type == "cpu" else None)
        torch.set_num_threads(args.threads)
        speed, step_peaks, flops_per_token = interleaved_throughput(
            argvs, args.warmup, args.updates, device)

    per = "CPU-s" if device.type == "cpu" else "s"
    print(f"device: {device_name(device)}; ours in {'bf16 autocast' if args.bf16 else 'fp32'}, "
          f"fairseq in {'fp16' if args.fairseq_fp16 else 'fp32'}")
    print(f"model {args.layers} x {args.dim} (FFN {args.ffn}, {args.heads} heads), {args.updates} "
          f"alternating updates of <= {args.max_tokens} tokens each after {args.warmup}, crop "
          f"{args.tokens_per_sample}, {args.threads} thread(s); "
          f"{flops_per_token / 1e6:.1f} MFLOP per token (matrix products, forward and backward)")
    peak = peak_tflops(device, half=args.bf16 or args.fairseq_fp16)
    for name in argvs:
        achieved = speed[name] * flops_per_token / 1e12
        memory = (f"peak RSS {rss[name]:6.0f} MiB" if rss else
                  f"step peak {step_peaks[name]:6.0f} MiB over the resident state")
        mfu = f", MFU {100 * achieved / peak:.1f} % of {peak:.0f}" if peak else ""
        print(f"  {name:8s} {speed[name]:8.0f} tokens/{per}, {memory}, "
              f"{achieved:.3f} TFLOP/s{mfu}")
    memory = rss if rss else step_peaks
    print(f"speed-up ours/fairseq: {speed['ours'] / speed['fairseq']:.2f}x tokens per {per}, "
          f"peak memory ratio {memory['ours'] / memory['fairseq']:.2f}")


if __name__ == "__main__":
    main()
