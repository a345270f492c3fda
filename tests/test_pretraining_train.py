"""End to end with the real binaries: fairseq-train (vq_wav2vec_tiny, Gumbel and k-means) on a
small synthetic corpus, resume, fairseq-generate printing units, and the quantize CLI."""

import math
import os
import re

import pytest
import soundfile as sf
import torch
from fairseq.data import Dictionary

import fairseq_vqw2v  # noqa: F401
from fairseq_vqw2v.checkpoint import load_fairseq_checkpoint
from fairseq_vqw2v.cli import quantize
from fairseq_vqw2v.data.manifest import read_manifest
from fairseq_vqw2v.data.unit_files import read_dictionary_counts, tokens_to_codes
from fairseq_vqw2v.models.vq_wav2vec import VqWav2VecModel
from fairseq_vqw2v.precision import bf16_available, bf16_missing

from _pretraining_util import pretrain_args, train_losses, write_corpus

UPDATES = 10
# a short aggregator keeps the k-means run fast; the encoder stays the tiny arch's
SHORT_AGGREGATOR = ["--conv-aggregator-layers", "[(128, 2, 1), (128, 3, 1)]"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(str(root), labels=True)
    return root


@pytest.fixture(scope="module")
def gumbel_run(corpus, tmp_path_factory, fairseq_cli):
    """An uninterrupted Gumbel run of UPDATES updates."""
    save = tmp_path_factory.mktemp("gumbel")
    result = fairseq_cli("train", *pretrain_args(corpus, save, UPDATES), threads=2)
    assert result.returncode == 0, result.stderr[-3000:]
    return save, train_losses(result.stdout)


def load_model(checkpoint):
    state = load_fairseq_checkpoint(str(checkpoint))
    model = VqWav2VecModel.build_model(state["cfg"].model)
    model.load_state_dict(state["model"])
    return model.eval()


def test_gumbel_training_loss_decreases(gumbel_run):
    save, stats = gumbel_run
    assert sorted(stats) == list(range(1, UPDATES + 1))
    losses = [float(stats[u]["loss"]) for u in sorted(stats)]
    assert all(math.isfinite(x) for x in losses)
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.8 * first, losses
    # a run's values cannot be known in advance (test_pretraining_criterion checks them against
    # fairseq and by hand); here, that the run logs them, within what its codebook allows
    cfg = load_model(save / "checkpoint_last.pt").cfg
    for u in stats.values():
        assert {"accuracy", "temp"} <= set(u)
        assert 1.0 <= float(u["code_perplexity"]) <= cfg.vq_groups * cfg.vq_vars
        assert float(u["prob_perplexity"]) <= cfg.vq_groups * cfg.vq_vars
        assert 1 <= float(u["distinct_codes"]) <= cfg.vq_vars**cfg.vq_groups


def test_resume_from_checkpoint_last_continues_identically(corpus, gumbel_run, tmp_path, fairseq_cli):
    _, uninterrupted = gumbel_run
    half = UPDATES // 2
    first = fairseq_cli("train", *pretrain_args(corpus, tmp_path, half), threads=2)
    assert first.returncode == 0, first.stderr[-3000:]
    second = fairseq_cli("train", *pretrain_args(corpus, tmp_path, UPDATES), threads=2)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Loaded checkpoint" in second.stdout
    resumed = train_losses(first.stdout)
    resumed.update(train_losses(second.stdout))
    for u in range(1, UPDATES + 1):
        for key in ("loss", "code_perplexity", "gnorm"):
            assert resumed[u][key] == uninterrupted[u][key], (u, key)


def test_kmeans_trains_without_nan_and_warns_on_collapse(corpus, tmp_path, fairseq_cli):
    extra = [
        *SHORT_AGGREGATOR, "--vq-type", "kmeans", "--loss-weights", "[1]",
        # a strict threshold so a few updates on a toy corpus trigger the warning
        "--collapse-warn-fraction", "0.9", "--collapse-warn-after", "2",
        "--collapse-warn-interval", "10",
    ]
    result = fairseq_cli("train", *pretrain_args(corpus, tmp_path, 4, arch="vq_wav2vec_kmeans",
                                                 extra=extra), threads=2)
    assert result.returncode == 0, result.stderr[-3000:]
    stats = train_losses(result.stdout)
    assert len(stats) == 4
    for u in stats.values():
        assert math.isfinite(float(u["loss"])) and math.isfinite(float(u["loss_1"]))
        assert "temp" not in u  # k-means has no temperature
    warnings = re.findall(r"WARNING.*codebook has collapsed", result.stdout)
    assert len(warnings) == 1, result.stdout[-3000:]
    assert "after 2 updates" in warnings[0]


def test_bad_manifest_line_stops_fairseq_train_with_the_line(corpus, tmp_path, fairseq_cli):
    data = tmp_path / "data"
    data.mkdir()
    lines = (corpus / "train.tsv").read_text().splitlines()
    lines[2] = lines[2].replace("\t", " ")
    (data / "train.tsv").write_text("\n".join(lines) + "\n")
    result = fairseq_cli("train", *pretrain_args(data, tmp_path / "save", 2), threads=2)
    assert result.returncode == 1
    # the one-line message alone, without fairseq's traceback above it
    assert result.stderr.splitlines()[-1] == (
        f"error: {data / 'train.tsv'}:3: expected 'relative/path<TAB>num_samples', got "
        f"{lines[2]!r}")
    assert "Traceback" not in result.stderr


def test_bad_audio_found_mid_run_is_skipped_named_and_counted(corpus, tmp_path, fairseq_cli):
    data = tmp_path / "data"
    data.mkdir()
    lines = (corpus / "train.tsv").read_text().splitlines()
    audio, rate = sf.read(os.path.join(lines[0], lines[-1].split("\t")[0]), dtype="float32")
    audio[100] = float("nan")
    sf.write(data / "nan.wav", audio, rate, subtype="FLOAT")
    lines[-1] = f"{data / 'nan.wav'}\t{len(audio)}"
    (data / "train.tsv").write_text("\n".join(lines) + "\n")
    save = tmp_path / "save"
    result = fairseq_cli("train", *pretrain_args(data, save, 3), threads=2)  # one epoch
    assert result.returncode == 0, result.stderr[-3000:]
    assert (save / "checkpoint_last.pt").exists()
    output = result.stdout + result.stderr
    assert (f"{data / 'train.tsv'}:{len(lines)}: {data / 'nan.wav'} has non-finite samples "
            "(NaN or inf): skipped") in output
    stats = train_losses(result.stdout)
    assert sorted(stats) == [1, 2, 3]
    # logged in the update whose batch held it
    assert sum(float(stats[u].get("bad_audio", 0)) for u in stats) == 1
    assert all(math.isfinite(float(stats[u]["loss"])) for u in stats)


def generate_units(fairseq_cli, checkpoint, data, subset):
    result = fairseq_cli("generate", data, "--task", "vqw2v_pretraining", "--path", checkpoint,
                         "--gen-subset", subset, "--batch-size", "2", "--num-workers", "0",
                         threads=2)
    assert result.returncode == 0, result.stderr[-3000:]
    return {
        int(m.group(1)): m.group(2).split()
        for m in re.finditer(r"^H-(\d+)\t\S+\t(.*)$", result.stdout, re.M)
    }


def test_generate_and_quantize_write_the_same_units(corpus, gumbel_run, tmp_path, fairseq_cli):
    save, _ = gumbel_run
    checkpoint = save / "checkpoint_last.pt"
    model = load_model(checkpoint)
    manifest = read_manifest(str(corpus / "valid.tsv"))
    sizes = torch.tensor([n for _, n in manifest.entries])
    frames = model.output_lengths(sizes).tolist()

    generated = generate_units(fairseq_cli, checkpoint, corpus, "valid")
    assert sorted(generated) == list(range(len(frames)))
    assert [len(generated[i]) for i in range(len(frames))] == frames

    quantize.main([
        "--checkpoint", str(checkpoint), "--manifest-dir", str(corpus), "--splits",
        "train,valid", "--dest", str(tmp_path), "--batch-size-seconds", "3", "--report",
    ])
    lines = (tmp_path / "valid.src").read_text().splitlines()
    assert [line.split() for line in lines] == [generated[i] for i in range(len(frames))]

    # round trip: the tokens parse back to the codes of each utterance quantized alone
    import soundfile as sf

    for i, line in enumerate(lines):
        audio, _ = sf.read(manifest.audio_path(i), dtype="float32")
        idx = model.extract_features(torch.from_numpy(audio)[None])["idx"][0]
        assert torch.equal(tokens_to_codes(line, 2), idx)

    total = sum(len(line.split()) for split in ("train", "valid")
                for line in (tmp_path / f"{split}.src").read_text().splitlines())
    counts = read_dictionary_counts(str(tmp_path / "dict.txt"))
    assert sum(counts.values()) == total
    assert len(Dictionary.load(str(tmp_path / "dict.txt"))) == 4 + len(counts)
    for ext in ("wrd", "ltr"):
        assert (tmp_path / f"valid.{ext}").read_text() == (corpus / f"valid.{ext}").read_text()
    assert (tmp_path / "train.usage.png").stat().st_size > 0
    assert '"bitrate"' in (tmp_path / "valid.usage.json").read_text()

    # two shards of a trained quantizer merged give the same bytes
    shards = tmp_path / "shards"
    for shard in ("0", "1"):
        quantize.main([
            "--checkpoint", str(checkpoint), "--manifest-dir", str(corpus), "--splits",
            "train,valid", "--dest", str(shards), "--batch-size-seconds", "3", "--shard", shard,
            "--num-shards", "2",
        ])
    quantize.main(["--merge", "--dest", str(shards), "--splits", "train,valid",
                   "--num-shards", "2"])
    for name in ("train.src", "valid.src", "dict.txt"):
        assert (shards / name).read_bytes() == (tmp_path / name).read_bytes(), name
    assert not list(shards.glob("*shard*"))


@pytest.mark.skipif(not bf16_available("cpu"), reason=f"no bf16 autocast: {bf16_missing('cpu')}")
def test_bf16_quantize_gives_the_fp32_units(corpus, gumbel_run, tmp_path):
    """Units of a (briefly) trained model: at least 99% of the frames get the same code under
    bf16 autocast (the encoder's log compression and the code logits stay fp32)."""
    checkpoint = gumbel_run[0] / "checkpoint_last.pt"
    units = {}
    for flags in ([], ["--bf16"]):
        dest = tmp_path / ("bf16" if flags else "fp32")
        assert quantize.main(["--checkpoint", str(checkpoint), "--manifest-dir", str(corpus),
                              "--splits", "train,valid", "--dest", str(dest), *flags]) == 0
        units[bool(flags)] = [line.split() for split in ("train", "valid")
                              for line in (dest / f"{split}.src").read_text().splitlines()]
    frames = [(a, b) for fp32, bf16 in zip(units[False], units[True]) for a, b in zip(fp32, bf16)]
    assert [len(u) for u in units[False]] == [len(u) for u in units[True]]
    same = sum(a == b for a, b in frames) / len(frames)
    print(f"bf16 units equal to fp32 on {same:.2%} of {len(frames)} frames")
    assert same >= 0.99
