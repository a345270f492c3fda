"""Manifest API (fairseq_vqw2v.data.manifest), per-file checks and the audio-folder prep script."""

import os
import subprocess
import sys

import fairseq
import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from fairseq_vqw2v.constants import SAMPLE_RATE
from fairseq_vqw2v.data.audio_checks import REASONS, check_audio
from fairseq_vqw2v.data.manifest import ManifestError, read_manifest, write_split
from fairseq_vqw2v.data.receptive_field import receptive_field
from fairseq_vqw2v.data.text_norm import normalize_words, words_to_letters
from manifests import audio_folder
from manifests.common import DEFAULT_MIN_SAMPLES, skip_summary

from _manifests_util import run, tone, write_audio

WAV2VEC_MANIFEST = os.path.join(
    os.path.dirname(fairseq.__file__), "examples", "wav2vec", "wav2vec_manifest.py"
)


def make_bad(path, kind):
    """Writes a file that ``check_audio`` must reject for reason ``kind``."""
    path = str(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if kind == "unreadable":
        with open(path, "wb") as f:
            f.write(b"RIFF but not really a wav file")
    elif kind == "empty":
        sf.write(path, np.zeros(0, dtype=np.float32), SAMPLE_RATE)
    elif kind == "too short":
        sf.write(path, tone()[: DEFAULT_MIN_SAMPLES - 1], SAMPLE_RATE)
    elif kind == "wrong sample rate":
        sf.write(path, tone(rate=8000), 8000)
    elif kind == "multi-channel":
        sf.write(path, np.stack([tone(), tone(seed=1)], axis=1), SAMPLE_RATE)
    elif kind == "non-finite samples":
        data = tone()
        data[1000] = np.nan
        sf.write(path, data, SAMPLE_RATE, subtype="FLOAT")
    return path


# --- labels ----------------------------------------------------------------------------------


def test_words_to_letters_matches_libri_labels():
    assert words_to_letters("hello world") == "h e l l o | w o r l d |"
    assert words_to_letters("don't") == "d o n ' t |"
    assert words_to_letters("") == ""


def test_normalize_words_lowercases_and_keeps_apostrophes():
    assert normalize_words("Well-known, ISN'T it?") == "well known isn't it"
    assert normalize_words("  A  ' B ") == "a b"
    assert normalize_words("123 !!") == ""


# --- receptive field -------------------------------------------------------------------------


def test_default_min_samples_is_the_encoder_receptive_field():
    layers = [(1, 10, 5), (1, 8, 4), (1, 4, 2), (1, 4, 2), (1, 4, 2), (1, 1, 1), (1, 1, 1)]
    assert DEFAULT_MIN_SAMPLES == receptive_field(layers) == 465

    def frames(num_samples):
        x = torch.zeros(1, 1, num_samples)
        for _, kernel, stride in layers:
            if x.shape[-1] < kernel:
                return 0
            x = F.conv1d(x, torch.ones(1, 1, kernel), stride=stride)
        return x.shape[-1]

    assert frames(DEFAULT_MIN_SAMPLES) == 1
    assert frames(DEFAULT_MIN_SAMPLES - 1) == 0


# --- read / write ----------------------------------------------------------------------------


def test_write_split_round_trips_through_read_manifest(tmp_path):
    rows = [("a/x.wav", 3200), ("y.flac", 16000)]
    labels = {"wrd": ["hi there", "yes"], "ltr": [words_to_letters("hi there"), "y e s |"]}
    write_split(str(tmp_path), "train", "/data/root", rows, labels)
    manifest = read_manifest(str(tmp_path / "train.tsv"))
    assert manifest.root == "/data/root"
    assert manifest.entries == rows
    assert manifest.audio_path(0) == "/data/root/a/x.wav"
    assert (tmp_path / "train.wrd").read_text() == "hi there\nyes\n"
    assert (tmp_path / "train.ltr").read_text() == "h i | t h e r e |\ny e s |\n"
    assert sorted(os.listdir(tmp_path)) == ["train.ltr", "train.tsv", "train.wrd"]


@pytest.mark.parametrize(
    "labels",
    [{"wrd": ["one label for two rows"]}, {"wrd": ["ok", "line\nbreak"]}],
    ids=["misaligned", "line-break"],
)
def test_write_split_leaves_nothing_on_error(tmp_path, labels):
    write_split(str(tmp_path), "train", "/old", [("old.wav", 1)], {"wrd": ["old"]})
    with pytest.raises(ManifestError, match="train.wrd"):
        write_split(str(tmp_path), "train", "/r", [("a.wav", 1), ("b.wav", 2)], labels)
    # the previous complete split is untouched and no temporary file is left behind
    assert sorted(os.listdir(tmp_path)) == ["train.tsv", "train.wrd"]
    assert read_manifest(str(tmp_path / "train.tsv")).root == "/old"


@pytest.mark.parametrize(
    "text, line, reason",
    [
        ("", 1, "root folder"),
        ("/root\na.wav\t10\nb.wav\n", 3, "expected"),
        ("/root\na.wav\tten\n", 2, "non-negative integer"),
        ("/root\na.wav\t-5\n", 2, "non-negative integer"),
    ],
    ids=["no-root", "no-tab", "not-a-number", "negative"],
)
def test_read_manifest_names_file_and_line(tmp_path, text, line, reason):
    path = tmp_path / "bad.tsv"
    path.write_text(text)
    with pytest.raises(ManifestError, match=f"{path}:{line}: .*{reason}"):
        read_manifest(str(path))


# --- audio checks ----------------------------------------------------------------------------


def test_check_audio_accepts_a_good_file(tmp_path):
    path = write_audio(tmp_path / "ok.wav")
    assert check_audio(path, DEFAULT_MIN_SAMPLES) == (3200, None)


@pytest.mark.parametrize("kind", REASONS)
def test_check_audio_reason(tmp_path, kind):
    path = make_bad(tmp_path / "bad.wav", kind)
    assert check_audio(path, DEFAULT_MIN_SAMPLES)[1] == kind


def test_check_audio_finds_non_finite_sample_past_the_first_block(tmp_path, monkeypatch):
    import fairseq_vqw2v.data.audio_checks as audio_checks_module

    monkeypatch.setattr(audio_checks_module, "_CHECK_BLOCK", 500)
    data = tone()
    data[-1] = np.inf
    path = str(tmp_path / "inf.wav")
    sf.write(path, data, SAMPLE_RATE, subtype="FLOAT")
    assert check_audio(path, DEFAULT_MIN_SAMPLES) == (3200, "non-finite samples")


def tree_with_bad_file(root, kind):
    """Three good files and one bad one (returned) of reason ``kind`` under ``root``."""
    for i in range(3):
        write_audio(root / f"good{i}.wav", seed=i)
    return make_bad(root / "sub" / "bad.wav", kind)


@pytest.mark.parametrize("kind", REASONS)
def test_bad_file_is_a_named_error_and_writes_nothing(tmp_path, capsys, kind):
    root = tmp_path / "audio"
    bad = tree_with_bad_file(root, kind)
    dest = tmp_path / "out"
    argv = [str(root), "--dest", str(dest), "--ext", "wav"]
    status, out, err = run(audio_folder.main, argv, capsys)
    assert status == 2
    assert err.splitlines()[-1].startswith(f"error: {os.path.realpath(bad)}: {kind}")
    assert not dest.exists()


@pytest.mark.parametrize("kind", REASONS)
def test_skip_bad_counts_each_reason(tmp_path, capsys, kind):
    root = tmp_path / "audio"
    bad = tree_with_bad_file(root, kind)
    dest = tmp_path / "out"
    argv = [str(root), "--dest", str(dest), "--ext", "wav", "--valid-percent", "0", "--skip-bad"]
    status, out, _ = run(audio_folder.main, argv, capsys)
    assert status == 0
    assert f"skipped 1 file: 1 {kind}" in out
    assert (dest / "train.skipped").read_text() == f"{os.path.realpath(bad)}\t{kind}\n"
    assert sorted(p for p, _ in read_manifest(str(dest / "train.tsv")).entries) == [
        f"good{i}.wav" for i in range(3)
    ]
    assert not (dest / "valid.tsv").exists()


def test_skip_summary_counts_most_frequent_first():
    reasons = ["wrong sample rate", "too short", "too short"]
    assert skip_summary(reasons) == "skipped 3 files: 2 too short, 1 wrong sample rate"


# --- audio folder ----------------------------------------------------------------------------


def nested_tree(root, n=24):
    paths = []
    for i in range(n):
        sub = ["", "spk1", "spk2/ch1", "spk2/ch2"][i % 4]
        paths.append(write_audio(root / sub / f"utt{i:02d}.wav", 0.05 + 0.01 * i, seed=i))
    return paths


@pytest.mark.parametrize("seed, valid", [(42, 0.3), (7, 0.5)])
def test_audio_folder_split_equals_fairseq_wav2vec_manifest(tmp_path, capsys, seed, valid):
    root = tmp_path / "audio"
    nested_tree(root)
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    common = ["--ext", "wav", "--seed", str(seed), "--valid-percent", str(valid)]
    subprocess.run(
        [sys.executable, WAV2VEC_MANIFEST, str(root), "--dest", str(theirs)] + common,
        check=True,
        capture_output=True,
    )
    status, out, _ = run(audio_folder.main, [str(root), "--dest", str(ours)] + common, capsys)
    assert status == 0, out
    for split in ("train", "valid"):
        assert (ours / f"{split}.tsv").read_text() == (theirs / f"{split}.tsv").read_text()
    assert len(read_manifest(str(ours / "valid.tsv"))) > 0


def test_skipping_a_bad_file_keeps_the_split_of_the_others(tmp_path, capsys):
    root = tmp_path / "audio"
    nested_tree(root)
    common = ["--ext", "wav", "--valid-percent", "0.4"]
    clean = tmp_path / "clean"
    assert run(audio_folder.main, [str(root), "--dest", str(clean)] + common, capsys)[0] == 0
    make_bad(root / "spk1" / "utt01.wav", "too short")
    skipped = tmp_path / "skipped"
    argv = [str(root), "--dest", str(skipped), "--skip-bad"] + common
    assert run(audio_folder.main, argv, capsys)[0] == 0
    for split in ("train", "valid"):
        before = read_manifest(str(clean / f"{split}.tsv")).entries
        after = read_manifest(str(skipped / f"{split}.tsv")).entries
        assert after == [e for e in before if e[0] != "spk1/utt01.wav"]


def test_process_pool_gives_the_same_checks_in_order(tmp_path, capsys):
    from manifests.common import check_all

    paths = [write_audio(tmp_path / f"{i:03d}.wav", 0.03 + 0.001 * i, seed=i) for i in range(70)]
    paths[33] = make_bad(tmp_path / "bad.wav", "multi-channel")
    serial = check_all(paths, DEFAULT_MIN_SAMPLES, SAMPLE_RATE, workers=1)
    pooled = check_all(paths, DEFAULT_MIN_SAMPLES, SAMPLE_RATE, workers=2)
    assert pooled == serial
    assert serial[33][1] == "multi-channel"
    assert serial[0] == (480, None)


def test_audio_folder_transcripts_by_path_stem_or_name(tmp_path, capsys):
    root = tmp_path / "audio"
    write_audio(root / "a" / "one.wav")
    write_audio(root / "a" / "two.flac", seed=1)
    write_audio(root / "three.wav", seed=2)
    listing = tmp_path / "transcripts.txt"
    listing.write_text("a/one.wav\tHello, World!\n\na/two\tIt's  ok\nthree\tGOOD-BYE\n")
    dest = tmp_path / "out"
    argv = [str(root), "--dest", str(dest), "--transcripts", str(listing), "--valid-percent", "0"]
    status, out, _ = run(audio_folder.main, argv, capsys)
    assert status == 0
    paths = [p for p, _ in read_manifest(str(dest / "train.tsv")).entries]
    expected = {"a/one.wav": "hello world", "a/two.flac": "it's ok", "three.wav": "good bye"}
    words = (dest / "train.wrd").read_text().splitlines()
    assert dict(zip(paths, words)) == expected
    letters = (dest / "train.ltr").read_text().splitlines()
    assert letters == [words_to_letters(w) for w in words]


@pytest.mark.parametrize("listing_text", ["other\thello\n", "one\t!!!\n"], ids=["missing", "empty"])
def test_audio_folder_missing_transcript(tmp_path, capsys, listing_text):
    root = tmp_path / "audio"
    write_audio(root / "one.wav")
    write_audio(root / "two.wav", seed=1)
    listing = tmp_path / "t.txt"
    listing.write_text(listing_text + "two\tfine\n")
    reason = "missing transcript" if "other" in listing_text else "empty transcript"
    argv = [str(root), "--dest", str(tmp_path / "out"), "--transcripts", str(listing)]
    status, _, err = run(audio_folder.main, argv, capsys)
    assert status == 2
    assert f"{root / 'one.wav'}: {reason}" in err
    status, out, _ = run(audio_folder.main, argv + ["--skip-bad", "--valid-percent", "0"], capsys)
    assert status == 0 and f"skipped 1 file: 1 {reason}" in out
    assert (tmp_path / "out" / "train.wrd").read_text() == "fine\n"


@pytest.mark.parametrize(
    "text, line", [("ok\tfine\nno tab here\n", 2), ("a\tx\n\na\ty\n", 3)], ids=["no-tab", "twice"]
)
def test_audio_folder_bad_transcript_listing_names_line(tmp_path, capsys, text, line):
    write_audio(tmp_path / "audio" / "a.wav")
    listing = tmp_path / "t.txt"
    listing.write_text(text)
    argv = [str(tmp_path / "audio"), "--dest", str(tmp_path / "out"), "--transcripts", str(listing)]
    status, _, err = run(audio_folder.main, argv, capsys)
    assert status == 2 and f"error: {listing}:{line}: " in err
    assert not (tmp_path / "out").exists()


def test_audio_folder_without_audio_is_an_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    argv = [str(tmp_path / "empty"), "--dest", str(tmp_path / "o")]
    status, _, err = run(audio_folder.main, argv, capsys)
    assert status == 2 and "no files with extension flac, wav" in err


def test_cli_exit_status_and_messages(tmp_path):
    """The real ``python -m`` entry point: progress and ``error:`` on stderr, status 2."""
    root = tmp_path / "audio"
    bad = tree_with_bad_file(root, "wrong sample rate")
    cmd = [sys.executable, "-m", "manifests.audio_folder", str(root), "--dest", str(tmp_path / "o")]
    failed = subprocess.run(cmd, capture_output=True, text=True)
    assert failed.returncode == 2
    assert "checking audio" in failed.stderr
    assert failed.stderr.splitlines()[-1] == (
        f"error: {os.path.realpath(bad)}: wrong sample rate (8000 Hz, expected {SAMPLE_RATE})"
    )
    assert failed.stdout == "" and not (tmp_path / "o").exists()
