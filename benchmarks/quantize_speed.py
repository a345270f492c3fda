"""Quantization speed: the quantize CLI's real-time factor against fairseq's reference loop.

    python benchmarks/quantize_speed.py [--minutes 10] [--threads 2] [--arch vq_wav2vec_tiny]
                                        [--batch-size-seconds S] [--bf16]

Writes ``--minutes`` of noise utterances of 2-15 s (speed does not depend on what is said) with
their manifest, and one random-weight model in both implementations (speed does not depend on
training either). Then, in wall time with ``--threads`` threads:
- ours: ``cli.quantize`` as a user runs it (model load, batches by length, unit files written);
- reference: fairseq's ``Wav2VecModel`` with the same weights, one utterance at a time through
  ``feature_extractor`` and ``vector_quantizer.forward_idx``, as fairseq's
  ``examples/wav2vec/vq-wav2vec_featurize.py`` does.
Prints the CPU model, audio seconds per second of both, and the ratio; ``--bf16`` runs ours in
bf16 (where the CPU has it) against the fp32 reference. ``--shards n`` runs ours as n
concurrent shard processes of ``--threads / n`` threads each, then ``--merge``: its time is the
slowest shard's own (from its summary line, so without the interpreter's start-up, as for one
process) plus the merge's.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from am_throughput import cpu_model  # noqa: E402  (puts tests/ on the path)
from _checkpoint_util import save_vq_checkpoint  # noqa: E402
from fairseq_vqw2v.cli.quantize import main as quantize_main  # noqa: E402
from pretrain_vs_fairseq import _models  # noqa: E402

SAMPLE_RATE = 16000


def write_noise_corpus(folder: str, minutes: float, seed: int = 0) -> list:
    """``folder/test.tsv`` over 2-15 s noise utterances; returns the waveforms."""
    rng = np.random.default_rng(seed)
    waves, total = [], 0.0
    while total < minutes * 60:
        seconds = float(rng.uniform(2, 15))
        waves.append((0.1 * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32))
        total += seconds
    lines = [folder]
    for i, wave in enumerate(waves):
        sf.write(os.path.join(folder, f"{i}.wav"), wave, SAMPLE_RATE)
        lines.append(f"{i}.wav\t{len(wave)}")
    with open(os.path.join(folder, "test.tsv"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return waves


def sharded_seconds(command, shards: int, threads: int) -> float:
    """Wall seconds of ``shards`` concurrent quantize shards (each its own summary's time) and
    their merge."""
    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, threads // shards)))
    procs = [subprocess.Popen([sys.executable, "-m", "fairseq_vqw2v.cli.quantize", *command,
                               "--shard", str(i), "--num-shards", str(shards)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
             for i in range(shards)]
    times = []
    for proc in procs:
        out, _ = proc.communicate()
        found = re.search(r"in ([\d.]+) s$", out.strip())
        if proc.returncode or not found:
            sys.exit(f"a quantize shard failed:\n{out}")
        times.append(float(found.group(1)))
    start = time.perf_counter()
    if quantize_main([*command, "--merge", "--num-shards", str(shards)]):
        sys.exit("quantize --merge failed")
    return max(times) + time.perf_counter() - start


@torch.inference_mode()
def reference_seconds(model, waves) -> float:
    """Wall seconds of fairseq's featurize loop: one utterance per forward."""
    model.eval()
    start = time.perf_counter()
    for wave in waves:
        z = model.feature_extractor(torch.from_numpy(wave).unsqueeze(0))
        model.vector_quantizer.forward_idx(z)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="audio to quantize")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--arch", default="vq_wav2vec_tiny")
    parser.add_argument("--batch-size-seconds", type=float, default=None,
                        help="quantize's --batch-size-seconds (default: its own)")
    parser.add_argument("--bf16", action="store_true", help="quantize with --bf16")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each, alternating; the best counts")
    parser.add_argument("--shards", type=int, default=1,
                        help="ours as this many concurrent shard processes, then --merge")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_model()}, {args.threads} thread(s), arch {args.arch}")

    with tempfile.TemporaryDirectory() as tmp:
        waves = write_noise_corpus(tmp, args.minutes)
        audio = sum(len(w) for w in waves) / SAMPLE_RATE
        ref, ours = _models(args.arch)
        checkpoint = save_vq_checkpoint(os.path.join(tmp, "vq.pt"), ours, tmp)
        command = ["--checkpoint", checkpoint, "--manifest-dir", tmp, "--splits", "test",
                   "--dest", os.path.join(tmp, "units")]
        if args.batch_size_seconds is not None:
            command += ["--batch-size-seconds", str(args.batch_size_seconds)]
        if args.bf16:
            command.append("--bf16")
        # alternating, best of --repeats each: this shared machine's speed drifts by 20% within
        # minutes; later runs also find oneDNN's kernels built, as a long job's batches do
        ours_runs, ref_runs = [], []
        for _ in range(args.repeats):
            if args.shards > 1:
                ours_runs.append(sharded_seconds(command, args.shards, args.threads))
            else:
                start = time.perf_counter()
                if quantize_main(command):
                    sys.exit("quantize failed")
                ours_runs.append(time.perf_counter() - start)
            ref_runs.append(reference_seconds(ref, waves))
        ours_s, ref_s = min(ours_runs), min(ref_runs)

    print(f"{len(waves)} utterances, {audio:.0f} s of audio, best of {args.repeats} runs each")
    how = f"{args.shards} shards" if args.shards > 1 else "the CLI"
    print(f"  ours ({'bf16' if args.bf16 else 'fp32'}, {how})  {audio / ours_s:7.0f}x real time "
          f"({ours_s:.1f} s)")
    print(f"  fairseq reference loop (fp32)  {audio / ref_s:7.0f}x real time ({ref_s:.1f} s)")
    print(f"speed-up ours/fairseq: {ref_s / ours_s:.2f}x")


if __name__ == "__main__":
    main()
