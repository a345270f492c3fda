"""Checkpoints are data: crafted configs must not run code, and non-checkpoints get one clear error.

The crafted checkpoints hold, in a layer list, an expression that escapes an ``eval`` without
builtins and runs ``touch MARKER`` (then yields a valid layer list, so an eval-based loader would
go on and succeed): every loader must refuse it, name the file and field, and leave no marker.
"""

import argparse
import dataclasses
import os

import pytest
import torch
from _checkpoint_util import save_vq_checkpoint
from fairseq.models.wav2vec.wav2vec import Wav2VecConfig

from fairseq_vqw2v.checkpoint import (
    CheckpointError,
    check_model_config,
    fairseq_envelope,
    load_fairseq_checkpoint,
    load_model,
    parse_layer_list,
)
from fairseq_vqw2v.cli.convert import main as convert_main
from fairseq_vqw2v.cli.featurize import main as featurize_main
from fairseq_vqw2v.cli.quantize import main as quantize_main
from fairseq_vqw2v.errors import TRACEBACK_VARIABLE
from fairseq_vqw2v.models.unit_bert import UnitBertModel
from fairseq_vqw2v.models.vq_wav2vec import VqWav2VecModel, arch_config
from fairseq_vqw2v.modules.layer_lists import WAV2VEC_LAYER_FIELDS

TINY_LAYERS = "[(16, 10, 5), (16, 8, 4)]"


def payload(marker) -> str:
    """Runs ``touch marker`` under ``eval(s, {"__builtins__": {}})``, then is a valid layer list."""
    escape = ("[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close']"
              "[0].__init__.__globals__['system']")
    return f"({escape}('touch {marker}'), {TINY_LAYERS})[1]"


def vq_checkpoint(path, data, **overrides):
    """A tiny vq_wav2vec checkpoint whose config fields are replaced by ``overrides``."""
    torch.manual_seed(0)
    model = VqWav2VecModel(arch_config("vq_wav2vec_tiny", conv_feature_layers=TINY_LAYERS, vq_vars=6))
    return save_vq_checkpoint(path, model, data, **overrides)


def wav2vec_checkpoint(path, data, **overrides):
    """A config of fairseq's own ``wav2vec`` model (whose constructor eval()s the layer lists)."""
    model = {**dataclasses.asdict(Wav2VecConfig()), "_name": "wav2vec", "infonce": False,
             **overrides}
    torch.save(fairseq_envelope({"common": {"seed": 1}, "model": model, "criterion": None,
                                 "task": {"_name": "vqw2v_pretraining", "data": str(data)}},
                                {}), path)
    return str(path)


def cli_calls(path, tmp_path):
    """{name: call returning the exit code} of every CLI that reads ``path`` as a checkpoint."""
    dest = str(tmp_path / "out")
    calls = {
        "quantize": lambda: quantize_main(["--checkpoint", path, "--manifest-dir", str(tmp_path),
                                           "--splits", "test", "--dest", dest]),
        "featurize --vq-checkpoint": lambda: featurize_main(
            ["--vq-checkpoint", path, "--bert-checkpoint", path, "--manifest-dir", str(tmp_path),
             "--split", "test", "--dest", dest]),
        "convert wav2vec": lambda: convert_main(["wav2vec", path, dest + ".pt"]),
        "convert roberta": lambda: convert_main(["roberta", path, dest + ".pt"]),
    }
    return calls


def assert_clis_refuse(path, tmp_path, capsys, message):
    for name, call in cli_calls(path, tmp_path).items():
        rc = call()
        err = capsys.readouterr().err
        assert rc == 1, name
        assert f"error: {path}: {message}" in err, (name, err)
        assert "Traceback" not in err and "weights_only" not in err, (name, err)


def test_layer_lists_are_parsed_not_evaluated(tmp_path):
    marker = tmp_path / "MARKER"
    assert parse_layer_list(TINY_LAYERS, "x", WAV2VEC_LAYER_FIELDS) == [(16, 10, 5), (16, 8, 4)]
    # wav2vec 2.0's default is list arithmetic, not a plain literal
    w2v2 = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] + [(512,2,2)]"
    assert parse_layer_list(w2v2, "x", WAV2VEC_LAYER_FIELDS) == eval(w2v2)
    for bad, reason in [
        (payload(marker), "is not allowed"),
        ("__import__('os').system('true')", "Call"),
        ("[(16, 10)]", r"layer 0 is \(16, 10\), expected \[\(dim, kernel, stride\), ...\]"),
        ("[(16, 0, 5)]", "layer 0 kernel must be a positive int, got 0"),
        ("[(16, 10, 5.0)]", "layer 0 stride must be a positive int, got 5.0"),
        ("[]", "non-empty"),
        ("[(16, 10, 5)] * 100000", "repetition"),
        ("[(16, 10, 5)", "does not parse"),
    ]:
        with pytest.raises(ValueError, match=rf"conv_feature_layers is not a literal layer list: .*{reason}"):
            parse_layer_list(bad, "conv_feature_layers", WAV2VEC_LAYER_FIELDS)
    # the model parses its own config the same way (fairseq-train, fairseq-generate)
    with pytest.raises(ValueError, match="conv_aggregator_layers is not a literal layer list"):
        VqWav2VecModel(arch_config("vq_wav2vec_tiny", conv_aggregator_layers=payload(marker)))
    assert not marker.exists()


@pytest.mark.parametrize("kind,field", [("vq_wav2vec", "conv_feature_layers"),
                                        ("wav2vec", "conv_aggregator_layers")])
def test_crafted_checkpoint_runs_nothing_in_any_cli(tmp_path, capsys, kind, field):
    marker = tmp_path / "MARKER"
    make = vq_checkpoint if kind == "vq_wav2vec" else wav2vec_checkpoint
    path = make(tmp_path / "crafted.pt", tmp_path, **{field: payload(marker)})
    message = f"cfg.model.{field} is not a literal layer list: "
    with pytest.raises(CheckpointError, match=f"^{path}: {message}"):
        load_fairseq_checkpoint(path)
    assert_clis_refuse(path, tmp_path, capsys, message)
    assert not marker.exists()


def test_crafted_legacy_args_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "MARKER"
    args = argparse.Namespace(arch="wav2vec", task="audio_pretraining", data=str(tmp_path),
                              conv_feature_layers=payload(marker), criterion="wav2vec")
    path = str(tmp_path / "legacy.pt")
    torch.save(fairseq_envelope(None, {}, args=args), path)
    with pytest.raises(CheckpointError, match=f"^{path}: args.conv_feature_layers is not a literal"):
        load_fairseq_checkpoint(path)
    assert not marker.exists()


def generate(fairseq_cli, checkpoint, data, traceback=False):
    # empty counts as unset: the traceback only when asked for, whatever the calling shell sets
    return fairseq_cli("generate", data, "--task", "vqw2v_pretraining", "--path", checkpoint,
                       "--gen-subset", "valid", "--batch-size", "1", timeout=120,
                       env={TRACEBACK_VARIABLE: "1" if traceback else ""})


def test_fairseq_generate_refuses_crafted_vq_wav2vec_checkpoint(tmp_path, fairseq_cli):
    marker = tmp_path / "MARKER"
    path = vq_checkpoint(tmp_path / "crafted.pt", tmp_path, conv_feature_layers=payload(marker))
    done = generate(fairseq_cli, path, tmp_path)
    assert done.returncode != 0
    assert "conv_feature_layers is not a literal layer list" in done.stderr, done.stderr[-2000:]
    assert not marker.exists()


def test_fairseq_generate_refuses_crafted_fairseq_wav2vec_checkpoint(tmp_path, fairseq_cli):
    marker = tmp_path / "MARKER"
    path = wav2vec_checkpoint(tmp_path / "crafted.pt", tmp_path,
                              conv_feature_layers=payload(marker))
    done = generate(fairseq_cli, path, tmp_path)
    assert done.returncode != 0 and not marker.exists()


def _write(path, obj=None, raw=None, legacy=False):
    if raw is not None:
        path.write_bytes(raw)
    else:
        torch.save(obj, path, _use_new_zipfile_serialization=not legacy)


def _truncated(path, legacy):
    _write(path, fairseq_envelope({"model": {"_name": "x"}}, {"w": torch.zeros(1000)}),
           legacy=legacy)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


class Pwn:
    def __reduce__(self):
        return os.system, ("true",)


NOT_CHECKPOINTS = {
    "empty": (lambda p: _write(p, raw=b""), "not a checkpoint: empty file (0 bytes)"),
    "text": (lambda p: _write(p, raw=b"version https://git-lfs.github.com/spec/v1\n"),
             "not a checkpoint: a text file"),
    "binary": (lambda p: _write(p, raw=bytes(range(256))), "not a checkpoint: not a torch.save file"),
    "truncated": (lambda p: _truncated(p, False), "truncated or corrupt checkpoint"),
    "truncated legacy": (lambda p: _truncated(p, True), "truncated or corrupt checkpoint"),
    "plain dict": (lambda p: _write(p, {"weights": torch.zeros(2)}),
                   "not a fairseq checkpoint: a dict without 'model'"),
    "bare tensor": (lambda p: _write(p, torch.zeros(2)), "not a fairseq checkpoint: a bare tensor"),
    "list": (lambda p: _write(p, [torch.zeros(2)]), "not a fairseq checkpoint: a list"),
    "state dict only": (lambda p: _write(p, {"model": {"w": torch.zeros(2)}}),
                        "not a fairseq checkpoint: no 'cfg' or 'args'"),
    "code": (lambda p: _write(p, {"model": Pwn()}), "refused: it pickles posix.system"),
}


@pytest.mark.parametrize("kind", list(NOT_CHECKPOINTS))
def test_non_checkpoints_get_one_clear_error(tmp_path, capsys, kind):
    write, message = NOT_CHECKPOINTS[kind]
    path = tmp_path / "model.pt"
    write(path)
    with pytest.raises(CheckpointError) as caught:
        load_fairseq_checkpoint(str(path))
    assert str(caught.value).startswith(f"{path}: {message}")
    assert "weights_only" not in str(caught.value)
    assert_clis_refuse(str(path), tmp_path, capsys, message)


@pytest.mark.parametrize("kind", ["empty", "text"])
def test_fairseq_generate_path_names_a_non_checkpoint_in_one_line(tmp_path, kind, fairseq_cli):
    write, message = NOT_CHECKPOINTS[kind]
    path = tmp_path / "model.pt"
    write(path)
    done = generate(fairseq_cli, str(path), tmp_path)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1].startswith(f"error: {path}: {message}")
    assert "Traceback" not in done.stderr and "weights_only" not in done.stderr
    if kind == "text":  # the traceback on request
        done = generate(fairseq_cli, str(path), tmp_path, traceback=True)
        assert "Traceback" in done.stderr and f"CheckpointError: {path}: {message}" in done.stderr


@pytest.mark.parametrize("legacy", [False, True])
def test_mapped_load_reads_what_a_full_load_reads(tmp_path, legacy):
    """mmap=True (the pipeline's reads of a config or an update count) returns the same
    checkpoint; a legacy (non-zip) file, which cannot be mapped, is read whole."""
    path = tmp_path / "model.pt"
    weights = {"w": torch.randn(64, 8), "b": torch.arange(8.0)}
    _write(path, fairseq_envelope({"model": {"_name": "x"}, "task": {"dedup_units": True}},
                                  weights, num_updates=7), legacy=legacy)
    full, mapped = load_fairseq_checkpoint(str(path)), load_fairseq_checkpoint(str(path), mmap=True)
    assert mapped["cfg"] == full["cfg"] and mapped["cfg"]["task"]["dedup_units"] is True
    assert mapped["optimizer_history"][-1]["num_updates"] == 7
    assert all(torch.equal(mapped["model"][k], v) for k, v in weights.items())
    _truncated(path, legacy)
    with pytest.raises(CheckpointError, match="truncated or corrupt checkpoint"):
        load_fairseq_checkpoint(str(path), mmap=True)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pt: no such checkpoint file"):
        load_fairseq_checkpoint(str(tmp_path / "nothing.pt"))


def test_load_model_builds_only_the_expected_models(tmp_path):
    # list arithmetic (wav2vec 2.0's form) is accepted in a real checkpoint
    path = vq_checkpoint(tmp_path / "vq.pt", tmp_path,
                         conv_feature_layers="[(16, 10, 5)] + [(16, 8, 4)] * 1")
    model, cfg, _ = load_model(path, (VqWav2VecModel,))
    assert isinstance(model, VqWav2VecModel) and cfg.task.data == str(tmp_path)
    with pytest.raises(CheckpointError, match=rf"^{path}: not a unit_bert checkpoint \(model "
                       r"'vq_wav2vec'\); convert it"):
        load_model(path, (UnitBertModel,), hint="convert it")
    with pytest.raises(CheckpointError, match="model config: not a vq_wav2vec checkpoint"):
        check_model_config({"_name": "fconv_lm"}, (VqWav2VecModel,))


def test_model_config_check_for_task_build_model(tmp_path):
    marker = tmp_path / "MARKER"
    crafted = {"_name": "vq_wav2vec_tiny", "conv_aggregator_layers": payload(marker)}
    with pytest.raises(CheckpointError, match="^model config: cfg.model.conv_aggregator_layers "
                       "is not a literal layer list"):
        check_model_config(crafted, (VqWav2VecModel,))
    # the other options fairseq eval()s are held to literals too
    with pytest.raises(CheckpointError, match="cfg.model.adaptive_softmax_cutoff is not a literal"):
        check_model_config({"_name": "vq_wav2vec", "adaptive_softmax_cutoff": "open('x')"},
                           (VqWav2VecModel,))
    check_model_config({"_name": "vq_wav2vec", "adaptive_softmax_cutoff": "[1000, 5000]",
                        "conv_feature_layers": TINY_LAYERS, "infonce": "${criterion.infonce}"},
                       (VqWav2VecModel,))
    assert not marker.exists()
