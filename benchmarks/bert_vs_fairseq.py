"""BERT-on-units training speed and memory: ours (``unit_mlm`` + ``unit_bert`` + ``span_mlm``) vs
fairseq's ``masked_lm`` + ``roberta`` + ``masked_lm`` criterion.

Both run through ``fairseq-train`` on the same unit corpus (fairseq binarized, one utterance per
sample: ``--sample-break-mode eos`` for masked_lm), with the same model size, masking rule
(paper spans: masked_lm's ``--mask-prob 0.5 --mask-multiple-length 10``, ours ``--mask-prob 0.05
--mask-length 10``, mask only), optimizer, batch size and number of updates; validation and
checkpointing are off. Throughput is fairseq's own ``wps`` (tokens per second, framing included)
averaged over the logging intervals after the first (warm-up); peak memory is each training
process's max RSS (``os.wait4``). Runs alternate ``--repeats`` times to even out machine load.

    python benchmarks/bert_vs_fairseq.py [--updates 30] [--layers 4 --dim 256 --ffn 1024 --heads 4]
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

ROOT = Path(__file__).resolve().parent.parent


def write_corpus(folder: Path, utterances: int, seed: int = 0) -> None:
    """Unit lines like a G=2 quantizer's output: 2 x 64 codes, slowly varying, 1..6 s at 100 Hz."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    counts = {}
    lines = []
    for _ in range(utterances):
        n = int(rng.integers(100, 600))
        # codes persist for a few frames, as speech units do
        change = rng.random((n, 2)) < 0.3
        codes = np.cumsum(change * rng.integers(1, 64, (n, 2)), axis=0) % 64
        toks = [f"{a}-{b}" for a, b in codes]
        for tok in toks:
            counts[tok] = counts.get(tok, 0) + 1
        lines.append(" ".join(toks))
    (folder / "train.src").write_text("\n".join(lines) + "\n")
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    (folder / "dict.txt").write_text("".join(f"{t} {c}\n" for t, c in ranked))


def run(cmd):
    """Runs a training command; returns (log, max RSS in MiB)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{log[-3000:]}")
    return log, usage.ru_maxrss / 1024


def throughput(log: str) -> float:
    wps = [float(x) for x in re.findall(r"train_inner \|.*?wps=([\d.]+)", log)]
    if len(wps) < 2:
        sys.exit(f"too few logging intervals to measure:\n{log[-2000:]}")
    return statistics.mean(wps[1:])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=30)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--ffn", type=int, default=1024)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--tokens-per-sample", type=int, default=256)
    parser.add_argument("--utterances", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_corpus(tmp / "units", args.utterances)
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
            "--max-tokens", str(args.max_tokens), "--max-update", str(args.updates), "--cpu",
            "--disable-validation", "--no-save", "--log-format", "simple",
            "--log-interval", "10", "--num-workers", "0", "--seed", "1",
        ]
        commands = {
            "fairseq": [sys.executable, "-m", "fairseq_cli.train", *common, "--task", "masked_lm",
                        "--arch", "roberta_base", "--criterion", "masked_lm",
                        "--sample-break-mode", "eos", "--mask-prob", "0.5",
                        "--mask-multiple-length", "10", "--leave-unmasked-prob", "0",
                        "--random-token-prob", "0"],
            "ours": [sys.executable, "-m", "fairseq_cli.train", *common, "--user-dir",
                     str(ROOT / "fairseq_vqw2v"), "--task", "unit_mlm", "--arch", "unit_bert_base",
                     "--criterion", "span_mlm", "--mask-prob", "0.05", "--mask-length", "10"],
        }
        results = {name: {"wps": [], "rss": []} for name in commands}
        for repeat in range(args.repeats):
            for name, cmd in commands.items():
                log, rss = run(cmd)
                results[name]["wps"].append(throughput(log))
                results[name]["rss"].append(rss)
                print(f"[{repeat + 1}/{args.repeats}] {name:8s} {results[name]['wps'][-1]:9.0f} "
                      f"tokens/s  peak RSS {rss:7.0f} MiB", flush=True)

    size = f"{args.layers} x {args.dim} (FFN {args.ffn}, {args.heads} heads)"
    best = {name: max(r["wps"]) for name, r in results.items()}
    peak = {name: max(r["rss"]) for name, r in results.items()}
    print(f"model {size}, {args.updates} updates of <= {args.max_tokens} tokens, "
          f"crop {args.tokens_per_sample}, threads {os.environ.get('OMP_NUM_THREADS', 'default')}")
    for name in commands:
        print(f"  {name:8s} best {best[name]:9.0f} tokens/s, peak RSS {peak[name]:7.0f} MiB")
    print(f"speed-up ours/fairseq: {best['ours'] / best['fairseq']:.2f}x tokens/s, "
          f"memory ratio {peak['ours'] / peak['fairseq']:.2f}")


if __name__ == "__main__":
    main()
