"""Pretraining speed and memory: our ``vq_wav2vec`` vs fairseq's built-in ``wav2vec``.

Both models get the same config (from our arch), the same initial weights, the same batches and
the same number of Adam updates on the same loss (fairseq's wav2vec criterion: BCE plus the
quantizer's extra loss). Each (arch, implementation) runs in its own subprocess, so peak memory is
that process's ``resource.getrusage`` max RSS; we report the growth of max RSS during training
(peak minus RSS before the first update) next to the total.

    python benchmarks/pretrain_vs_fairseq.py --archs vq_wav2vec_tiny vq_wav2vec_gumbel

On a GPU (``--device cuda``, with ``--autocast`` for bf16) memory is the allocator's peak, and
model FLOP utilisation is the reference's counted FLOPs per update (torch's FlopCounterMode)
times updates per second over the card's data-sheet peak (``_device.py``).
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from _device import device_name, peak_tflops  # benchmarks/

FIELDS_NOT_IN_FAIRSEQ = {"temp_schedule", "temp_anneal_fraction", "max_update", "compile"}


def _models(arch):
    import fairseq_vqw2v  # noqa: F401
    from dataclasses import asdict
    from fairseq.models.wav2vec.wav2vec import Wav2VecConfig, Wav2VecModel
    from fairseq_vqw2v.interop.wav2vec import convert_state_dict
    from fairseq_vqw2v.models.vq_wav2vec import VqWav2VecModel, arch_config

    cfg = arch_config(arch)
    ref_fields = {k: v for k, v in asdict(cfg).items() if k not in FIELDS_NOT_IN_FAIRSEQ | {"_name"}}
    torch.manual_seed(0)
    ref = Wav2VecModel(Wav2VecConfig(**ref_fields))
    ours = VqWav2VecModel(cfg)
    ours.load_state_dict(convert_state_dict(ref.state_dict()))
    return ref, ours


def _loss(model, source):
    out = model(source)
    logits = model.get_logits(out).float()
    target = model.get_targets(None, out)
    weights = model.get_target_weights(target, out)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, target.float(), weights, reduction="sum"
    )
    extra = model.get_extra_losses(out)
    if extra is not None:
        loss = loss + extra.float() * target.sum()
    return loss


def run_one(arch, impl, updates, batch_size, seconds, threads, device="cpu", autocast=False):
    """Trains one implementation; returns its measurements (called in a fresh subprocess)."""
    torch.set_num_threads(threads)
    device = torch.device(device)
    ref, ours = _models(arch)
    model = (ours if impl == "ours" else ref).to(device)
    del ref, ours  # only the measured model stays alive
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randn(batch_size, int(seconds * 16000), generator=gen).to(device)
               for _ in range(updates + 1)]
    losses = []

    def step(source):
        optimizer.zero_grad()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = _loss(model, source)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())  # waits for the GPU

    def memory_mb():
        if device.type == "cuda":
            return torch.cuda.max_memory_allocated(device) / 2**20
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    setup_mb = memory_mb()
    torch.manual_seed(2)
    # warm-up (allocator, Adam state): counts for memory and FLOPs, not for time
    with FlopCounterMode(display=False) as counter:
        step(batches[0])
    walls = []
    for source in batches[1:]:
        start = time.perf_counter()
        step(source)
        walls.append(time.perf_counter() - start)
    peak_mb = memory_mb()
    # the median update is robust to other processes competing for the CPU
    wall = statistics.median(walls)
    return {
        "arch": arch, "impl": impl, "audio_s_per_s": batch_size * seconds / wall,
        "peak_mb": peak_mb, "train_mb": peak_mb - setup_mb,
        "first_loss": losses[0], "last_loss": losses[-1],
        "tflops": counter.get_total_flops() / wall / 1e12,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=["vq_wav2vec_tiny", "vq_wav2vec_gumbel"])
    parser.add_argument("--updates", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=4.0, help="audio per utterance")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=1, help="runs per implementation (best kept)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--autocast", action="store_true", help="both under bf16 autocast")
    parser.add_argument("--worker", nargs=2, metavar=("ARCH", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_one(*args.worker, args.updates, args.batch_size, args.seconds,
                                 args.threads, args.device, args.autocast)))
        return

    from tqdm import tqdm

    jobs = [(a, impl) for a in args.archs for _ in range(args.repeats) for impl in ("fairseq", "ours")]
    results = {}
    for arch, impl in tqdm(jobs, desc="benchmark runs"):
        cmd = [sys.executable, __file__, "--worker", arch, impl, "--updates", str(args.updates),
               "--batch-size", str(args.batch_size), "--seconds", str(args.seconds),
               "--threads", str(args.threads), "--device", args.device,
               *(["--autocast"] if args.autocast else [])]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{arch}/{impl} failed:\n{done.stderr[-2000:]}")
        res = json.loads(done.stdout.strip().splitlines()[-1])
        best = results.get((arch, impl))
        if best is None or res["audio_s_per_s"] > best["audio_s_per_s"]:
            results[(arch, impl)] = res

    device = torch.device(args.device)
    memory = ("the GPU allocator's peak (peak) and its growth over the models' allocation (train +MB)"
              if device.type == "cuda" else
              "max RSS of the process (peak) and its growth over the RSS after building the models "
              "(train +MB)")
    print(f"\n{device_name(device)}; {args.updates} Adam updates (median update timed), batch "
          f"{args.batch_size} x {args.seconds:g} s, {args.threads} threads, "
          f"{'bf16 autocast' if args.autocast else 'fp32'}, best of {args.repeats}; memory = {memory}; "
          "TFLOP/s: the model's matrix products (fairseq's count, forward and backward) per second")
    peak = peak_tflops(device, half=args.autocast)
    header = (f"{'arch':<20}{'impl':<9}{'audio s/s':>10}{'peak MB':>9}{'train +MB':>10}"
              f"{'TFLOP/s':>9}{'MFU %' if peak else '':>7}{'loss first/last':>20}")
    print(header + "\n" + "-" * len(header))
    summary = []
    for arch in args.archs:
        ref, ours = results[(arch, "fairseq")], results[(arch, "ours")]
        for r in (ref, ours):
            tflops = ref["tflops"] * r["audio_s_per_s"] / ref["audio_s_per_s"]
            mfu = f"{100 * tflops / peak:>7.1f}" if peak else f"{'':>7}"
            print(f"{arch:<20}{r['impl']:<9}{r['audio_s_per_s']:>10.2f}{r['peak_mb']:>9.0f}"
                  f"{r['train_mb']:>10.0f}{tflops:>9.3f}{mfu}"
                  f"{r['first_loss']:>11.1f}/{r['last_loss']:.1f}")
        speed = ours["audio_s_per_s"] / ref["audio_s_per_s"]
        growth = ours["train_mb"] / ref["train_mb"]
        peak_ratio = ours["peak_mb"] / ref["peak_mb"]
        print(f"{arch:<20}{'ratio':<9}{speed:>9.2f}x{peak_ratio:>8.2f}x{growth:>9.2f}x")
        summary.append(f"{arch}: {speed:.2f}x throughput, {growth:.2f}x training memory")
    print("summary: " + "; ".join(summary))


if __name__ == "__main__":
    main()
