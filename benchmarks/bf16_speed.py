"""bf16 autocast against fp32 on this CPU: the three trainings and quantize/featurize.

    python benchmarks/bf16_speed.py [--updates 3] [--threads N]

Trainings run fairseq's own Trainer in process (``tests/_train_util.py``) from fairseq-train
command lines, with and without ``--autocast bf16``, on the tests' synthetic corpora; each
precision repeats the same first batch (one warm-up update, then ``--updates`` timed ones,
alternating the two precisions so that both see the same machine load). quantize and featurize
run their CLIs with and without ``--bf16`` on random-weight upstreams (speed does not depend on
the weights). Times are CPU seconds of this process (``time.process_time``: all threads, not wall
time, so a shared machine slows both precisions alike). Prints the CPU model and its bf16
instructions, then per workload the median fp32 and bf16 seconds and bf16 / fp32 (below 1: bf16
is faster).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

BENCHMARKS = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(BENCHMARKS), os.path.join(os.path.dirname(BENCHMARKS), "tests")]

from _asr_util import train_args, write_letter_corpus  # noqa: E402
from _bert_util import write_unit_corpus  # noqa: E402
from _pretraining_util import USER_DIR, pretrain_args, write_corpus  # noqa: E402
from _train_util import build_trainer, train  # noqa: E402
from am_throughput import cpu_model, write_upstreams  # noqa: E402
from fairseq_vqw2v.cli.featurize import main as featurize_main  # noqa: E402
from fairseq_vqw2v.cli.quantize import main as quantize_main  # noqa: E402
from fairseq_vqw2v.precision import NATIVE_BF16_CPU, bf16_missing  # noqa: E402


def trainings(tmp: Path, vq: str, bert: str):
    """(name, fairseq-train command line without the program) of each training measured."""
    write_corpus(str(tmp / "audio"), splits=(("train", 8),), seconds=(2.0, 3.0))
    pretraining = [*pretrain_args(tmp / "audio", tmp / "save", 100), "--user-dir", USER_DIR, "--cpu"]
    units = write_unit_corpus(tmp / "units", splits=(("train", 200),))
    bert_argv = [units, "--user-dir", USER_DIR, "--task", "unit_mlm", "--criterion", "span_mlm",
                 "--tokens-per-sample", "128", "--optimizer", "adam", "--lr", "1e-4",
                 "--max-tokens", "4096", "--cpu", "--num-workers", "0"]
    write_letter_corpus(str(tmp / "letters"))
    asr = [*train_args(tmp / "letters", tmp / "am", 100), "--user-dir", USER_DIR, "--cpu"]
    upstreams = ["--upstream", vq, "--bert", bert]
    return [
        ("vqw2v_pretraining vq_wav2vec_tiny", pretraining),
        ("vqw2v_pretraining vq_wav2vec_small", [*pretraining, "--arch", "vq_wav2vec_small"]),
        ("unit_mlm unit_bert_tiny", [*bert_argv, "--arch", "unit_bert_tiny"]),
        ("unit_mlm unit_bert_small", [*bert_argv, "--arch", "unit_bert_small"]),
        ("vqw2v_asr w2l_ctc_tiny, logmel", [*asr, "--input", "logmel"]),
        ("vqw2v_asr w2l_ctc_tiny, bert (vq tiny + BERT 2x128 on the fly)",
         [*asr, "--input", "bert", *upstreams]),
    ]


def training_seconds(argv, updates: int):
    """Median CPU seconds per update: fp32, bf16."""
    trainers = [build_trainer(argv), build_trainer([*argv, "--autocast", "bf16"])]
    for trainer in trainers:
        train(trainer, 1)  # warm-up: allocators, oneDNN primitives
    seconds = [[], []]
    for _ in range(updates):
        for trainer, times in zip(trainers, seconds):
            times.append(train(trainer, 1)[0]["cpu_seconds"])
    return [statistics.median(times) for times in seconds]


def cli_seconds(main, argv, repeats: int):
    """Median CPU seconds of a CLI run: fp32, bf16 (after one warm-up run each)."""
    seconds = [[], []]
    for run in range(repeats + 1):
        for flags, times in zip(([], ["--bf16"]), seconds):
            start = time.process_time()
            assert main([*argv, *flags]) == 0
            if run:
                times.append(time.process_time() - start)
    return [statistics.median(times) for times in seconds]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=3, help="timed updates per training")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    capabilities = torch.cpu.get_capabilities()
    native = [name for name in NATIVE_BF16_CPU if capabilities.get(name)]
    print(f"CPU: {cpu_model()}, {args.threads} threads; bf16 instructions: "
          f"{', '.join(native) or 'none'}; torch {torch.__version__}")
    if bf16_missing("cpu"):
        sys.exit(f"bf16 autocast is off on this CPU: {bf16_missing('cpu')}")
    print("| workload | fp32 CPU s | bf16 CPU s | bf16 / fp32 |\n|---|---|---|---|")

    def row(name, fp32, bf16, unit):
        print(f"| {name} | {fp32:.2f} | {bf16:.2f} | {bf16 / fp32:.2f} | ({unit})", flush=True)

    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        vq, bert = write_upstreams(folder)
        for name, argv in trainings(tmp, vq, bert):
            row(name, *training_seconds(argv, args.updates), "per update")
        audio = str(tmp / "audio")  # 8 utterances of 2-3 s, written for the pretraining
        common = ["--manifest-dir", audio]
        row("quantize (vq_wav2vec_tiny)", *cli_seconds(
            quantize_main, ["--checkpoint", vq, *common, "--splits", "train",
                            "--dest", str(tmp / "q")], args.updates), "per run")
        row("featurize (vq_wav2vec_tiny + BERT 2x128)", *cli_seconds(
            featurize_main, ["--vq-checkpoint", vq, "--bert-checkpoint", bert, *common,
                             "--split", "train", "--dest", str(tmp / "f")], args.updates), "per run")
        row("featurize c (vq_wav2vec_tiny)", *cli_seconds(
            featurize_main, ["--vq-checkpoint", vq, *common, "--split", "train",
                             "--dest", str(tmp / "c")], args.updates), "per run")


if __name__ == "__main__":
    main()
