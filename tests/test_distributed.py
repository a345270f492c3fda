"""Distributed training on CPU through fairseq's own engine, launched as examples/distributed says.

Each training (pretraining, unit_mlm, the CTC acoustic model) runs one epoch of 4 batches twice:
on two processes (examples/distributed/torchrun.sh: torchrun, gloo, legacy_ddp; each process one
batch per update) and on one process accumulating the same two batches (plain fairseq-train,
``--update-freq 2``). fairseq shards the epoch's batch list round-robin (process r takes batches
r, r + 2, ...) and groups it in order for --update-freq, so every update sees the same global
batch in both runs. The runs must then agree on

- the parameters, exactly: with two workers every gradient is the same float32 sum of two
  addends (gloo adds the workers' gradients, one process adds its second batch's to its first's),
  and legacy_ddp's division by the world size and fairseq's multiplication by world size / sample
  size are powers of two away from the single process's 1 / sample size (more workers would add
  in another order, and agree only to rounding);
- every logged statistic (codebook perplexity and distinct codes, masked accuracy, error rates):
  fairseq sums the workers' counts, the values are derived from the sums, and so they are those of
  the global batch, which is what the single process sees;
- the checkpoints: each run's checkpoint resumes in the other setup for a second epoch, and both
  continuations end with the same parameters. Resuming across world sizes is exact at epoch ends
  only: fairseq stores the position in an epoch as the batches one worker has read.

The trainings are made deterministic for the comparison: no dropout, the k-means quantizer (Gumbel
noise is drawn per process from the same seed, so two workers draw what one process would draw for
its first batch twice) and negatives that leave no choice (``--sample-distance 2
--num-negatives 1``: each frame's negative is the other of the first two frames).
"""

import json
import os
import shlex
import shutil
import socket
import subprocess

import pytest
import torch

from _asr_util import write_letter_corpus
from _bert_util import write_unit_corpus
from _fairseq_cli import fairseq_env
from _pretraining_util import BIN, REPO, train_losses, write_corpus
from fairseq_vqw2v.tasks._common import check_training_run
from test_recipes import parse

TORCHRUN = os.path.join(REPO, "examples", "distributed", "torchrun.sh")
SLURM = os.path.join(REPO, "examples", "distributed", "slurm.sbatch")
# flags of torchrun.sh's CPU launch that only a torchrun process can use
LAUNCH_ONLY = {"--distributed-init-method": 1, "--distributed-rank": 1, "--distributed-no-spawn": 0,
               "--distributed-world-size": 1}

# per stage: the tiny model and a fast schedule (lr at its peak from the first update), after the
# stage's flags in torchrun.sh (fairseq's parser keeps the last value of a flag)
TINY = {
    "pretrain": [
        "--arch", "vq_wav2vec_tiny", "--vq-type", "kmeans", "--loss-weights", "[1]", "--vq-vars", "16",
        "--conv-feature-layers", "[(32, 10, 5), (32, 8, 4), (32, 4, 2), (32, 4, 2), (32, 4, 2)]",
        "--conv-aggregator-layers", "[(32, 2, 1), (32, 3, 1)]", "--prediction-steps", "2",
        "--num-negatives", "1", "--sample-distance", "2", "--max-sample-size", "16000",
        "--min-sample-size", "4000", "--max-tokens", "48000", "--lr", "1e-3", "--warmup-updates", "0",
        "--seed", "1", "--disable-validation",
    ],
    "bert": [
        "--arch", "unit_bert_tiny", "--dropout", "0", "--attention-dropout", "0",
        "--activation-dropout", "0", "--tokens-per-sample", "64", "--mask-prob", "0.15",
        "--mask-length", "3", "--batch-size", "4", "--max-tokens", "100000", "--lr", "1e-3",
        "--warmup-updates", "0", "--total-num-update", "100", "--disable-validation",
    ],
    "am": [
        "--arch", "w2l_ctc_tiny", "--conv-layers", "[(64, 7, 2, 0.0), (64, 1, 1, 0.0)]",
        "--batch-size", "2", "--lr", "1e-3", "--warmup-updates", "0",
    ],
}
COMMON = ["--num-workers", "0", "--log-interval", "1", "--log-format", "json"]
# what each stage logs from counts summed over the workers, and where (train or valid lines)
STATISTICS = {
    "pretrain": ("train", ["loss", "loss_1", "accuracy", "code_perplexity", "distinct_codes"]),
    "bert": ("train", ["loss", "accuracy", "nmasked", "ncorrect"]),
    "am": ("valid", ["loss", "wer", "ler"]),
}


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def example(script, stage, data, save, *flags, **env):
    """The command line an example script runs (its DRY_RUN output)."""
    values = dict(os.environ, DRY_RUN="1", PATH=f"{BIN}:{os.environ['PATH']}", **env)
    out = subprocess.run(["bash", script, stage, str(data), str(save), *flags], env=values,
                         capture_output=True, text=True, timeout=60, check=True)
    return shlex.split(out.stdout)


def launch(stage, data, save, max_update):
    """torchrun.sh's command line for two processes on CPU."""
    command = example(TORCHRUN, stage, data, save, *TINY[stage], *COMMON, "--update-freq", "1",
                      "--max-update", str(max_update), DEVICE="cpu", GPUS="2", PORT=str(free_port()))
    command[command.index("torchrun")] = os.path.join(BIN, "torchrun")
    return command


def two_processes(stage, data, save, max_update):
    """torchrun.sh's training on two processes: its log."""
    return trained_log(subprocess.run(launch(stage, data, save, max_update), capture_output=True,
                                      text=True, timeout=600, env=fairseq_env()))


def one_process(fairseq_cli, stage, data, save, max_update):
    """The same fairseq-train flags without the launch: plain fairseq-train, --update-freq 2; its
    log."""
    command = launch(stage, data, save, max_update)
    launch_end = [os.path.basename(token) for token in command].index("fairseq-train")
    args = command[launch_end + 1:]
    kept, i = [], 0
    while i < len(args):
        if args[i] in LAUNCH_ONLY:
            i += 1 + LAUNCH_ONLY[args[i]]
            continue
        kept.append(args[i])
        i += 1
    # the script's flags hold --user-dir and --cpu already
    return trained_log(fairseq_cli("train", *kept, "--update-freq", "2", plugin=False, cpu=False))


def trained_log(done):
    """A training's log, once it ended well."""
    assert done.returncode == 0, (shlex.join(done.args), done.stdout[-3000:], done.stderr[-3000:])
    return done.stdout + done.stderr


def valid_stats(output):
    """{epoch: stats} of fairseq-train's json ``valid`` lines (keys without the ``valid_``)."""
    stats = {}
    for line in output.splitlines():
        start = line.find("{")
        if start >= 0 and "| valid |" in line[:start]:
            record = json.loads(line[start:])
            stats[int(record["epoch"])] = {k.removeprefix("valid_"): v for k, v in record.items()}
    return stats


def logged(output, where):
    return train_losses(output) if where == "train" else valid_stats(output)


def parameters(save):
    state = torch.load(os.path.join(save, "checkpoint_last.pt"), map_location="cpu", weights_only=False)
    return state["model"]


def assert_same_parameters(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), (name, float((a[name] - b[name]).abs().max()))


def assert_same_statistics(two, one, stage):
    where, keys = STATISTICS[stage]
    two, one = logged(two, where), logged(one, where)
    assert two.keys() == one.keys() and two, (two, one)
    for step in two:
        for key in keys:
            # logged with 3 decimals: one rounding step apart at most
            assert float(two[step][key]) == pytest.approx(float(one[step][key]), abs=1.5e-3), (step, key)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """{stage: data folder}, each of 8 training utterances (4 batches)."""
    root = tmp_path_factory.mktemp("distributed")
    write_corpus(str(root / "audio"), splits=(("train", 8), ("valid", 2)))
    write_unit_corpus(root / "units", splits=(("train", 16), ("valid", 4)))
    write_letter_corpus(str(root / "letters"), splits=(("train", 8), ("valid", 4)))
    return {"pretrain": root / "audio", "bert": root / "units", "am": root / "letters"}


@pytest.mark.slow  # 12 fairseq-train runs (6 of two processes): 150 s for the three on 2 cores
@pytest.mark.parametrize("stage", ["pretrain", "bert", "am"])
def test_two_processes_train_as_one_and_checkpoints_cross_over(stage, corpora, tmp_path, fairseq_cli):
    data = corpora[stage]
    two = two_processes(stage, data, tmp_path / "two", 2)
    one = one_process(fairseq_cli, stage, data, tmp_path / "one", 2)
    assert sorted(train_losses(two)) == sorted(train_losses(one)) == [1, 2]  # one epoch: 2 updates
    assert "distributed init" in two and "distributed init" not in one
    assert_same_parameters(parameters(tmp_path / "two"), parameters(tmp_path / "one"))
    assert_same_statistics(two, one, stage)

    # the second epoch: two processes from one's checkpoint, one from two's
    for src, dst in (("one", "two_from_one"), ("two", "one_from_two")):
        (tmp_path / dst).mkdir()
        shutil.copy(tmp_path / src / "checkpoint_last.pt", tmp_path / dst)
    resumed_two = two_processes(stage, data, tmp_path / "two_from_one", 4)
    resumed_one = one_process(fairseq_cli, stage, data, tmp_path / "one_from_two", 4)
    for output in (resumed_two, resumed_one):
        assert "Loaded checkpoint" in output and "(epoch 2 @ 2 updates)" in output
        assert sorted(train_losses(output)) == [3, 4]
    assert_same_parameters(parameters(tmp_path / "two_from_one"), parameters(tmp_path / "one_from_two"))
    assert_same_statistics(resumed_two, resumed_one, stage)


@pytest.mark.parametrize("stage", ["pretrain", "bert", "am"])
@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_example_command_lines_parse(stage, device, tmp_path):
    """torchrun.sh (one and two nodes) and slurm.sbatch hand fairseq-train flags it accepts."""
    for command, world in (
        (example(TORCHRUN, stage, tmp_path, tmp_path / "save", DEVICE=device, GPUS="2"), 2),
        (example(TORCHRUN, stage, tmp_path, tmp_path / "save", DEVICE=device, GPUS="8", NODES="2",
                 NODE_RANK="1", MASTER="host0"), 16),
        (example(SLURM, stage, tmp_path, tmp_path / "save", SLURM_NNODES="2",
                 SLURM_NTASKS_PER_NODE="8"), 16),
    ):
        args, error = parse(command)
        assert error is None, error
        assert args.distributed_world_size == world
        cpu = device == "cpu" and command[0] == "torchrun"
        assert (args.ddp_backend, args.distributed_backend, args.cpu) == (
            ("legacy_ddp", "gloo", True) if cpu else ("c10d", "nccl", False)
        )
    assert command[0] == "srun" and args.distributed_port == 29500
    two_nodes = example(TORCHRUN, stage, tmp_path, tmp_path, GPUS="8", NODES="2", NODE_RANK="1",
                        MASTER="host0")
    assert two_nodes[:11] == ["torchrun", "--nnodes", "2", "--node_rank", "1", "--nproc_per_node",
                              "8", "--master_addr", "host0", "--master_port", "29500"]


def test_example_scripts_are_valid_bash():
    for name in ("torchrun.sh", "slurm.sbatch", "stages.sh"):
        path = os.path.join(REPO, "examples", "distributed", name)
        assert subprocess.run(["bash", "-n", path]).returncode == 0, name


class Cfg:
    """A task config as fairseq-train resolves it (the fields check_training_run reads)."""

    def __init__(self, **values):
        defaults = dict(save_dir="${x}", restore_file="${x}", cpu=True, distributed_world_size=2,
                        ddp_backend="pytorch_ddp", load_checkpoint_on_all_dp_ranks=False,
                        autocast="none", bf16=False, fp16=False, amp=False)
        self.__dict__.update({**defaults, **values})


@pytest.mark.parametrize("backend", ["c10d", "pytorch_ddp"])
def test_torch_ddp_on_cpu_is_refused_with_the_fix(backend):
    with pytest.raises(ValueError, match="--ddp-backend legacy_ddp"):
        check_training_run(Cfg(ddp_backend=backend))
    check_training_run(Cfg(ddp_backend="legacy_ddp"))
    check_training_run(Cfg(ddp_backend=backend, distributed_world_size=1))


def test_resuming_on_several_processes_needs_each_to_load_the_checkpoint(tmp_path):
    torch.save({}, tmp_path / "checkpoint_last.pt")  # only its existence matters here
    run = dict(save_dir=str(tmp_path), restore_file="checkpoint_last.pt", ddp_backend="legacy_ddp")
    with pytest.raises(ValueError, match="--load-checkpoint-on-all-dp-ranks"):
        check_training_run(Cfg(**run))
    check_training_run(Cfg(**run, load_checkpoint_on_all_dp_ranks=True))
    check_training_run(Cfg(**run, distributed_world_size=1))
