"""BERT-on-units training speed and memory: ours (``unit_mlm`` + ``unit_bert`` + ``span_mlm``) vs
fairseq's ``masked_lm`` + ``roberta`` + ``masked_lm`` criterion.

Both run through ``fairseq-train`` on the same unit corpus (fairseq binarized, one utterance per
sample: ``--sample-break-mode eos`` for masked_lm), with the same model size, masking rule
(paper spans: masked_lm's ``--mask-prob 0.5 --mask-multiple-length 10``, ours ``--mask-prob 0.05
--mask-length 10``, mask only), optimizer, batch size and number of updates; validation and
checkpointing are off.

Throughput is measured in CPU time, which a busy shared machine disturbs far less than wall time:
each implementation trains ``--updates`` and then ``2 x --updates`` updates in separate processes
(same seed, so the first updates are the same batches), and tokens/s is the tokens of the extra
updates (fairseq's per-update ``wpb``, framing included) over the extra CPU seconds (user + system,
``os.wait4``), which cancels start-up and data loading. With ``--threads 1`` (default) that is
single-core throughput. Peak memory is each training process's max RSS. Fairseq's own wall-clock
``wps`` is printed too. Runs alternate ``--repeats`` times; the best repeat counts.

    python benchmarks/bert_vs_fairseq.py [--updates 10] [--layers 4 --dim 256 --ffn 1024 --heads 4]
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from am_throughput import cpu_model  # noqa: E402

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


def run(cmd, threads):
    """Runs a training command; returns (log, CPU seconds, max RSS in MiB)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    log = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{log[-3000:]}")
    return log, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def per_update(log: str, key: str):
    values = [float(x) for x in re.findall(rf"train_inner \|.*?\b{key}=([\d.]+)", log)]
    if not values:
        sys.exit(f"no train_inner lines to measure:\n{log[-2000:]}")
    return values


def measure(cmd, updates, threads):
    """(tokens per CPU second over updates U+1..2U, fairseq's wall wps, max RSS MiB)."""
    _, cpu_short, _ = run([*cmd, "--max-update", str(updates)], threads)
    log, cpu_long, rss = run([*cmd, "--max-update", str(2 * updates)], threads)
    tokens = sum(per_update(log, "wpb")[updates:])
    return tokens / (cpu_long - cpu_short), statistics.mean(per_update(log, "wps")[1:]), rss


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=10)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--ffn", type=int, default=1024)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--tokens-per-sample", type=int, default=256)
    parser.add_argument("--utterances", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bf16", action="store_true",
                        help="ours under --autocast bf16 (fairseq's masked_lm stays fp32: its --bf16 "
                        "is TPU-only)")
    args = parser.parse_args()

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
            "--max-tokens", str(args.max_tokens), "--cpu",
            "--disable-validation", "--no-save", "--log-format", "simple",
            "--log-interval", "1", "--num-workers", "0", "--seed", "1",
        ]
        commands = {
            "fairseq": [sys.executable, "-m", "fairseq_cli.train", *common, "--task", "masked_lm",
                        "--arch", "roberta_base", "--criterion", "masked_lm",
                        "--sample-break-mode", "eos", "--mask-prob", "0.5",
                        "--mask-multiple-length", "10", "--leave-unmasked-prob", "0",
                        "--random-token-prob", "0"],
            "ours": [sys.executable, "-m", "fairseq_cli.train", *common, "--user-dir",
                     str(ROOT / "fairseq_vqw2v"), "--task", "unit_mlm", "--arch", "unit_bert_base",
                     "--criterion", "span_mlm", "--mask-prob", "0.05", "--mask-length", "10",
                     *(["--autocast", "bf16"] if args.bf16 else [])],
        }
        results = {name: {"tps": [], "wps": [], "rss": []} for name in commands}
        for repeat in range(args.repeats):
            for name, cmd in commands.items():
                tps, wps, rss = measure(cmd, args.updates, args.threads)
                for key, value in zip(("tps", "wps", "rss"), (tps, wps, rss)):
                    results[name][key].append(value)
                print(f"[{repeat + 1}/{args.repeats}] {name:8s} {tps:8.0f} tokens/CPU-s "
                      f"(wall {wps:6.0f} tokens/s)  peak RSS {rss:6.0f} MiB", flush=True)

    best = {name: max(r["tps"]) for name, r in results.items()}
    peak = {name: max(r["rss"]) for name, r in results.items()}
    print(f"CPU: {cpu_model()}; ours in {'bf16 autocast' if args.bf16 else 'fp32'}, fairseq in fp32")
    print(f"model {args.layers} x {args.dim} (FFN {args.ffn}, {args.heads} heads), updates "
          f"{args.updates + 1}..{2 * args.updates} of <= {args.max_tokens} tokens, crop "
          f"{args.tokens_per_sample}, {args.threads} thread(s)")
    for name in commands:
        print(f"  {name:8s} {best[name]:8.0f} tokens/CPU-s, peak RSS {peak[name]:6.0f} MiB")
    print(f"speed-up ours/fairseq: {best['ours'] / best['fairseq']:.2f}x tokens per CPU second, "
          f"peak memory ratio {peak['ours'] / peak['fairseq']:.2f}")


if __name__ == "__main__":
    main()
