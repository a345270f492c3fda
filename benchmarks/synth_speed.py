"""Real-time factor of the embedded corpus generator (manifests/synth.py); the target is 100x on 2
cores.

    python benchmarks/synth_speed.py [--hours 0.1] [--jobs N]

Builds a fresh corpus in a temporary folder and prints the wall-clock real-time factor of the
synthesis (audio seconds per second) and its CPU cost (audio seconds per CPU second, flite
included). The CPU figure does not depend on what else the machine runs; the wall figure only
means something on otherwise idle cores, so the load average is printed beside it.
"""

import argparse
import os
import tempfile

from manifests import synth

TARGET = 100.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=0.1, help="train audio to synthesize")
    parser.add_argument("--jobs", type=int, default=None, help="parallel flite runs (cpu count)")
    args = parser.parse_args()
    jobs = args.jobs or os.cpu_count()
    cores = min(jobs, os.cpu_count())

    with tempfile.TemporaryDirectory() as out:
        meta = synth.build(out, hours=args.hours, seed=1, jobs=jobs, lm_words=100000)
    audio = meta["audio_hours"] * 3600
    per_cpu = audio / meta["synthesis_cpu_seconds"]
    rtf = meta["real_time_factor"]
    print(
        f"{audio:.0f} s of audio, {jobs} jobs: {meta['synthesis_seconds']:.1f} s wall, "
        f"{meta['synthesis_cpu_seconds']:.1f} CPU s ({per_cpu:.0f} audio s per CPU s, so "
        f"{per_cpu * cores:.0f}x on {cores} idle cores); load average {os.getloadavg()[0]:.1f}"
    )
    verdict = "meets" if rtf >= TARGET else "misses"
    print(f"synth real-time factor: {rtf:.0f}x wall ({verdict} the {TARGET:.0f}x target)")


if __name__ == "__main__":
    main()
