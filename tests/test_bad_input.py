"""Bad input is caught where it is read, with an error naming the file (and manifest line)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from fairseq_vqw2v.cli.featurize import main as featurize_main
from fairseq_vqw2v.cli.quantize import main as quantize_main
from fairseq_vqw2v.constants import SAMPLE_RATE
from fairseq_vqw2v.data.audio_dataset import ManifestAudioDataset
from fairseq_vqw2v.data.manifest import ManifestError
from fairseq_vqw2v.data.unit_dataset import load_units
from fairseq_vqw2v.data.labels import read_label_lines
from fairseq_vqw2v.data.unit_files import UnitFileError, read_unit_codes
from fairseq_vqw2v.decoding.lexicon import read_lexicon
from fairseq_vqw2v.errors import TRACEBACK_VARIABLE, InputError
from fairseq_vqw2v.interop.roberta import unit_bert_checkpoint
from fairseq_vqw2v.models.unit_bert import UnitBertConfig, UnitBertModel
from fairseq_vqw2v.tasks.unit_mlm import UnitMlmConfig, UnitMlmTask
from fairseq_vqw2v.unit_quality import read_alignments
from fairseq.data import Dictionary

from fairseq_vqw2v.models.vq_wav2vec import VqWav2VecModel, arch_config
from _checkpoint_util import save_vq_checkpoint


def vq_checkpoint(path, data):
    """A tiny vq_wav2vec checkpoint (16 channels, 160-sample frames, 6 x 6 units)."""
    torch.manual_seed(0)
    cfg = arch_config("vq_wav2vec_tiny", vq_vars=6, conv_feature_layers="[(16, 10, 5), "
                      "(16, 8, 4), (16, 4, 2), (16, 4, 2), (16, 4, 2)]")
    return save_vq_checkpoint(path, VqWav2VecModel(cfg), data)


def with_nan(noise, seconds=0.5):
    wav = noise(seconds)
    wav[100] = np.nan
    return wav


@pytest.mark.parametrize("case, message", [
    ("nan", "1.wav has non-finite samples (NaN or inf)"),
    ("inf", "1.wav has non-finite samples (NaN or inf)"),
    ("stereo", "1.wav has 2 channels, expected 1"),
    ("count", "1.wav has 8000 samples, the manifest says 9000"),
])
def test_audio_dataset_checks_what_it_reads(tmp_path, write_manifest, noise, case, message):
    bad = {"nan": with_nan(noise), "inf": np.full(8000, np.inf, dtype=np.float32),
           "stereo": np.stack([noise(0.5), noise(0.5, seed=1)], axis=1), "count": noise(0.5)}[case]
    counts = [8000, 9000] if case == "count" else None
    manifest = write_manifest(tmp_path, [noise(0.5), bad], counts=counts)
    dataset = ManifestAudioDataset(manifest, sample_rate=SAMPLE_RATE, shuffle=False)
    assert len(dataset[0]["source"]) == 8000
    with pytest.raises(ManifestError) as e:
        dataset[1]
    assert str(e.value).startswith(f"{manifest}:3: {tmp_path / '1.wav'}")
    assert message in str(e.value)


def test_wrong_sample_rate_is_named(tmp_path, write_manifest, noise):
    manifest = write_manifest(tmp_path, [noise(0.5)])
    with pytest.raises(ManifestError, match=r"test\.tsv:2: .*0\.wav has sample rate 16000, the task "
                       r"expects 8000"):
        ManifestAudioDataset(manifest, sample_rate=8000)[0]


def test_empty_manifest_is_an_error(tmp_path, write_manifest, noise):
    (tmp_path / "train.tsv").write_text(f"{tmp_path}\n")
    with pytest.raises(ManifestError, match=r"train\.tsv: no utterances$"):
        ManifestAudioDataset(str(tmp_path / "train.tsv"), sample_rate=SAMPLE_RATE)
    write_manifest(tmp_path, [noise(0.1)])
    with pytest.raises(ManifestError, match="no utterances of at least 4000 samples"):
        ManifestAudioDataset(str(tmp_path / "test.tsv"), sample_rate=SAMPLE_RATE, min_sample_size=4000)


def test_quantize_refuses_nan_audio(tmp_path, capsys, write_manifest, noise):
    manifest = write_manifest(tmp_path, [noise(0.5), with_nan(noise)])
    checkpoint = vq_checkpoint(tmp_path / "vq.pt", tmp_path)
    rc = quantize_main(["--checkpoint", checkpoint, "--manifest-dir", str(tmp_path),
                        "--splits", "test", "--dest", str(tmp_path / "units")])
    assert rc == 1
    err = capsys.readouterr().err
    assert f"error: {manifest}:3: {tmp_path / '1.wav'} has non-finite samples" in err
    assert not (tmp_path / "units" / "test.src").exists()


def test_quantize_refuses_empty_manifest(tmp_path, capsys):
    (tmp_path / "test.tsv").write_text(f"{tmp_path}\n")
    checkpoint = vq_checkpoint(tmp_path / "vq.pt", tmp_path)
    rc = quantize_main(["--checkpoint", checkpoint, "--manifest-dir", str(tmp_path),
                        "--splits", "test", "--dest", str(tmp_path / "units")])
    assert rc == 1
    assert f"error: {tmp_path / 'test.tsv'}: no utterances" in capsys.readouterr().err


def bert_checkpoint(folder, tokens):
    """A tiny unit_bert checkpoint with ``dict.txt`` of ``tokens`` beside it."""
    folder.mkdir()
    (folder / "dict.txt").write_text("".join(f"{t} 1\n" for t in tokens))
    torch.manual_seed(0)
    cfg = UnitBertConfig(encoder_layers=1, encoder_embed_dim=16, encoder_ffn_embed_dim=32,
                         encoder_attention_heads=2, max_positions=64)
    bert = UnitBertModel(cfg, len(tokens) + 5, padding_idx=1)
    torch.save(unit_bert_checkpoint(cfg, bert.state_dict(), str(folder)), folder / "bert.pt")
    return str(folder / "bert.pt")


def featurize_args(tmp_path, vq, bert):
    return ["--vq-checkpoint", vq, "--bert-checkpoint", bert, "--manifest-dir", str(tmp_path),
            "--split", "test", "--dest", str(tmp_path / "out")]


def test_featurize_refuses_bert_of_other_units(tmp_path, capsys, write_manifest, noise):
    write_manifest(tmp_path, [noise(0.5), noise(0.5, seed=1)])
    vq = vq_checkpoint(tmp_path / "vq.pt", tmp_path)
    bert = bert_checkpoint(tmp_path / "bert", [f"{a}-{b}" for a in range(100, 106) for b in range(6)])
    assert featurize_main(featurize_args(tmp_path, vq, bert)) == 1
    err = capsys.readouterr().err
    assert f"error: {vq}: " in err
    assert f"units (100%) are not in the dictionary of {bert} (limit --max-unknown-units 5%)" in err
    assert os.listdir(tmp_path / "out") == []  # no temporary file left behind


def test_featurize_refuses_nan_audio_and_leaves_no_temporary_file(
    tmp_path, capsys, write_manifest, noise
):
    manifest = write_manifest(tmp_path, [noise(0.5), with_nan(noise)])
    vq = vq_checkpoint(tmp_path / "vq.pt", tmp_path)
    bert = bert_checkpoint(tmp_path / "bert", [f"{a}-{b}" for a in range(6) for b in range(6)])
    assert featurize_main(featurize_args(tmp_path, vq, bert)) == 1
    assert f"error: {manifest}:3: {tmp_path / '1.wav'} has non-finite" in capsys.readouterr().err
    assert os.listdir(tmp_path / "out") == []


def test_empty_unit_file_and_dictionary_are_named_errors(tmp_path):
    (tmp_path / "dict.txt").write_text("")
    with pytest.raises(UnitFileError, match=r"dict\.txt: empty unit dictionary"):
        UnitMlmTask.setup_task(UnitMlmConfig(data=str(tmp_path)))
    (tmp_path / "dict.txt").write_text("1-2 5\n")
    (tmp_path / "train.src").write_text("")
    task = UnitMlmTask.setup_task(UnitMlmConfig(data=str(tmp_path)))
    with pytest.raises(UnitFileError, match=r"train\.src: no utterances \(an empty unit file\)"):
        task.load_dataset("train")


def test_empty_binarized_split_is_a_named_error(tmp_path):
    from fairseq.data import indexed_dataset

    dictionary = Dictionary()
    builder = indexed_dataset.make_builder(str(tmp_path / "valid.bin"), impl="mmap",
                                           vocab_size=len(dictionary))
    builder.finalize(str(tmp_path / "valid.idx"))
    with pytest.raises(UnitFileError, match=r"valid\.bin: no utterances"):
        load_units(str(tmp_path), "valid", dictionary)


def test_plugin_silences_only_known_harmless_warnings(tmp_path):
    """fairseq-train's config path (hydra compose) under default filters: ours still show."""
    code = (
        "import warnings;"
        "from fairseq import options; from fairseq.dataclass.utils import "
        "convert_namespace_to_omegaconf;"
        "p = options.get_training_parser();"
        f"a = options.parse_args_and_arch(p, [{str(tmp_path)!r}, '--user-dir', "
        f"{os.path.join(os.path.dirname(os.path.dirname(__file__)), 'fairseq_vqw2v')!r}, "
        "'--task', 'vqw2v_pretraining', '--arch', 'vq_wav2vec_tiny', '--criterion', "
        "'vqw2v_contrastive', '--cpu']);"
        "convert_namespace_to_omegaconf(a);"
        "warnings.warn('our own warning')"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("PYTHONWARNINGS", None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    warned = [line for line in done.stderr.splitlines() if "Warning:" in line]
    assert warned == ["<string>:1: UserWarning: our own warning"]


def test_split_names_that_leave_the_output_folder_are_refused(tmp_path, capsys):
    dest = tmp_path / "out" / "a" / "b"
    for main, args in ((quantize_main, ["--checkpoint", "vq.pt", "--splits", "train,../../evil"]),
                       (featurize_main, ["--vq-checkpoint", "vq.pt", "--split", "../../evil"])):
        with pytest.raises(SystemExit) as exited:
            main([*args, "--manifest-dir", str(tmp_path), "--dest", str(dest)])
        assert exited.value.code == 2
        assert ("split name '../../evil': must be a file name, without a path separator"
                in capsys.readouterr().err)
    # a list that names no split would write nothing (quantize: an empty dict.txt)
    for main, args in ((quantize_main, ["--checkpoint", "vq.pt", "--splits", ","]),
                       (featurize_main, ["--vq-checkpoint", "vq.pt", "--splits", ""])):
        with pytest.raises(SystemExit) as exited:
            main([*args, "--manifest-dir", str(tmp_path), "--dest", str(dest)])
        assert exited.value.code == 2
        assert "names no split" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    # the tasks build paths from fairseq's --train-subset / --valid-subset / --gen-subset too
    (tmp_path / "dict.txt").write_text("1-2 5\n")
    with pytest.raises(ManifestError, match=r"split name '\.\./units': must be a file name"):
        load_units(str(tmp_path), "../units", Dictionary.load(str(tmp_path / "dict.txt")))


def test_quantize_writes_nothing_when_a_later_split_has_bad_audio(
    tmp_path, capsys, write_manifest, noise
):
    write_manifest(tmp_path, [noise(0.5), noise(0.5, seed=1)], split="train", prefix="t")
    valid = write_manifest(tmp_path, [noise(0.5), with_nan(noise)], split="valid", prefix="v")
    (tmp_path / "train.ltr").write_text("a |\nb |\n")
    checkpoint = vq_checkpoint(tmp_path / "vq.pt", tmp_path)
    dest = tmp_path / "units"
    dest.mkdir()
    (dest / "older.txt").write_text("kept")
    rc = quantize_main(["--checkpoint", checkpoint, "--manifest-dir", str(tmp_path),
                        "--splits", "train,valid", "--dest", str(dest)])
    assert rc == 1
    assert f"error: {valid}:3: {tmp_path / 'v1.wav'} has non-finite" in capsys.readouterr().err
    assert os.listdir(dest) == ["older.txt"]  # no train.src without dict.txt, no staging folder
    os.remove(os.path.join(tmp_path, "valid.tsv"))
    write_manifest(tmp_path, [noise(0.5)], split="valid", prefix="v")
    assert quantize_main(["--checkpoint", checkpoint, "--manifest-dir", str(tmp_path),
                          "--splits", "train,valid", "--dest", str(dest)]) == 0
    assert sorted(os.listdir(dest)) == ["dict.txt", "older.txt", "train.ltr", "train.src",
                                        "valid.src"]


def test_training_datasets_skip_bad_audio_and_count_it(tmp_path, caplog, write_manifest, noise):
    manifest = write_manifest(tmp_path, [noise(0.5), with_nan(noise), noise(0.25)])
    dataset = ManifestAudioDataset(manifest, sample_rate=SAMPLE_RATE, shuffle=False, skip_bad=True)
    batch = dataset.collater([dataset[i] for i in range(3)])
    assert batch["id"].tolist() == [0, 2] and batch["bad_audio"] == 1
    assert f"{manifest}:3: {tmp_path / '1.wav'} has non-finite samples (NaN or inf): skipped" in caplog.text
    assert "bad_audio" not in dataset.collater([dataset[0], dataset[2]])
    assert dataset.collater([dataset[1]]) == {}


UNDECODABLE = b"1-2 3-4\n5-6 \xff7-8\n"


def test_undecodable_text_files_are_named_by_line(tmp_path):
    (tmp_path / "dict.txt").write_text("1-2 5\n3-4 1\n")
    (tmp_path / "train.src").write_bytes(UNDECODABLE)
    task = UnitMlmTask.setup_task(UnitMlmConfig(data=str(tmp_path)))
    message = r"train\.src:2: not UTF-8 text \(byte 0xff at column 5\)"
    with pytest.raises(InputError, match=message):
        task.load_dataset("train")
    with pytest.raises(InputError, match=message):
        read_unit_codes(str(tmp_path / "train.src"))
    (tmp_path / "dict.txt").write_bytes(b"1-2 5\n\xc3\x28 1\n")
    with pytest.raises(InputError, match=r"dict\.txt:2: not UTF-8 text \(byte 0xc3 at column 1\)"):
        UnitMlmTask.setup_task(UnitMlmConfig(data=str(tmp_path)))
    (tmp_path / "test.tsv").write_bytes(b"/root\n" + b"a.wav\t10\n" * 3000 + b"\xfe.wav\t10\n")
    with pytest.raises(InputError, match=r"test\.tsv:3002: not UTF-8 text \(byte 0xfe at column 1\)"):
        ManifestAudioDataset(str(tmp_path / "test.tsv"), sample_rate=SAMPLE_RATE)
    (tmp_path / "dict.ltr.txt").write_text("a 1\n")
    (tmp_path / "test.ltr").write_bytes(b"a |\n\xff |\n")
    with pytest.raises(InputError, match=r"test\.ltr:2: not UTF-8"):
        read_label_lines(str(tmp_path / "test.ltr"), 2)
    (tmp_path / "lexicon.txt").write_bytes(b"a\ta |\nb\t\xe9 |\n")
    with pytest.raises(InputError, match=r"lexicon\.txt:2: not UTF-8"):
        read_lexicon(str(tmp_path / "lexicon.txt"))
    (tmp_path / "test.align").write_bytes(b"\x80\n")
    with pytest.raises(InputError, match=r"test\.align:1: not UTF-8"):
        read_alignments(str(tmp_path / "test.align"))


def test_unit_mlm_refuses_units_its_dictionary_does_not_know(tmp_path):
    (tmp_path / "dict.txt").write_text("".join(f"{a}-{b} 1\n" for a in range(4) for b in range(4)))
    known = " ".join(f"{a}-{b}" for a in range(4) for b in range(4))
    (tmp_path / "train.src").write_text(f"{known} 9-9\n" + "".join(f"{a}-{a} 7-{a}\n" for a in range(4)))
    with pytest.raises(UnitFileError) as refused:
        UnitMlmTask.setup_task(UnitMlmConfig(data=str(tmp_path))).load_dataset("train")
    assert str(refused.value) == (
        f"{tmp_path / 'train.src'}: 5 of 25 units (20%) are not in the dictionary of "
        f"{tmp_path / 'dict.txt'} (limit --max-unknown-units 5%): were the units and the "
        "dictionary made by the same quantizer?")
    task = UnitMlmTask.setup_task(UnitMlmConfig(data=str(tmp_path), max_unknown_units=0.25))
    task.load_dataset("train")
    assert len(task.datasets["train"]) == 5


def test_featurize_units_dir_of_other_units_names_the_folder(tmp_path, capsys, write_manifest, noise):
    write_manifest(tmp_path, [noise(0.5), noise(0.5, seed=1)])
    units = tmp_path / "units"
    units.mkdir()
    (units / "test.src").write_text("7-7 7-8\n8-8\n")
    bert = bert_checkpoint(tmp_path / "bert", [f"{a}-{b}" for a in range(6) for b in range(6)])
    assert featurize_main(["--units-dir", str(units), "--bert-checkpoint", bert, "--manifest-dir",
                           str(tmp_path), "--split", "test", "--dest", str(tmp_path / "out")]) == 1
    assert (f"error: {units}: 3 of 3 units (100%) are not in the dictionary of {bert}"
            in capsys.readouterr().err)
    assert os.listdir(tmp_path / "out") == []


def test_input_error_in_a_dataloader_worker_ends_the_process_with_its_line(tmp_path):
    """fairseq-train reads batches in worker processes by default (--num-workers 1); torch
    re-raises a worker's error with the worker's traceback in its message."""
    code = (
        "import torch, fairseq_vqw2v\n"
        "from fairseq_vqw2v.data.manifest import ManifestError\n"
        "class Bad(torch.utils.data.Dataset):\n"
        "    def __len__(self): return 1\n"
        "    def __getitem__(self, i): raise ManifestError('train.tsv:2: x.wav is empty')\n"
        "next(iter(torch.utils.data.DataLoader(Bad(), num_workers=1)))\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop(TRACEBACK_VARIABLE, None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.splitlines() == ["error: train.tsv:2: x.wav is empty"]
