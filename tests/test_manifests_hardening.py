"""Prep scripts on hostile input: destinations, split names, file names, transcript keys, text."""

import os
import stat

import pytest

from fairseq_vqw2v.data.manifest import read_manifest
from fairseq_vqw2v.data.text_norm import normalize_words
from manifests import audio_folder, common, timit, wsj

from _manifests_util import run, write_audio
from test_manifests_corpora import timit_tree, timit_utterance


def folder(root, names=("a/x.wav", "b/y.wav")):
    for i, name in enumerate(names):
        write_audio(root / name, seed=i)
    return root


def folder_argv(root, dest, *extra):
    return [str(root), "--dest", str(dest), "--ext", "wav", "--valid-percent", "0", *extra]


def test_skip_bad_that_empties_a_split_is_an_error(tmp_path, capsys):
    root = tmp_path / "audio"
    write_audio(root / "a.wav")
    (root / "b.wav").write_bytes(b"not audio")
    listing = tmp_path / "valid.tsv"
    listing.write_text("u2\tb.wav\thello\n")
    (tmp_path / "train.tsv").write_text("u1\ta.wav\thello\n")
    argv = [str(root), "--dest", str(tmp_path / "out"), "--skip-bad",
            "--listing", f"train={tmp_path / 'train.tsv'}", "--listing", f"valid={listing}"]
    status, _, err = run(wsj.main, argv, capsys)
    assert status == 2
    assert err.splitlines()[-1] == ("error: split 'valid' would be empty (all of its files are unusable, "
                           "skipped 1 file: 1 unreadable); nothing written")
    assert not (tmp_path / "out").exists()  # not even the train split


@pytest.mark.parametrize("dest, message", [
    ("file", "cannot be an output folder: {tmp}/file is a file"),
    ("file/sub", "cannot be an output folder: {tmp}/file is a file"),
])
def test_invalid_destination_is_one_line_error(tmp_path, capsys, dest, message):
    root = folder(tmp_path / "audio")
    (tmp_path / "file").write_text("")
    status, out, err = run(audio_folder.main, folder_argv(root, tmp_path / dest), capsys)
    assert status == 2 and out == ""
    assert err == f"error: {tmp_path / dest}: {message.format(tmp=tmp_path)}\n"


def test_split_name_with_path_separator_is_rejected(tmp_path, capsys):
    write_audio(tmp_path / "a.wav")
    (tmp_path / "l.tsv").write_text("u1\ta.wav\thello\n")
    argv = [str(tmp_path), "--dest", str(tmp_path / "out"), "--listing", f"../up={tmp_path / 'l.tsv'}"]
    status, _, err = run(wsj.main, argv, capsys)
    assert status == 2
    assert err == "error: split name '../up': must be a file name, without a path separator\n"
    assert not (tmp_path / "up.tsv").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("name, shown", [("t\tab.wav", "'\\t'"), ("c\rr.wav", "'\\r'")])
def test_file_name_a_tsv_cannot_hold_is_rejected_with_its_path(tmp_path, capsys, name, shown):
    root = folder(tmp_path / "audio", ("ok.wav", name))
    status, _, err = run(audio_folder.main, folder_argv(root, tmp_path / "out"), capsys)
    assert status == 2
    bad = os.path.realpath(root / name)
    assert err == f"error: {bad!r}: a path in a manifest cannot contain {shown}\n"
    assert not (tmp_path / "out").exists()


def test_manifests_get_the_usual_file_mode(tmp_path, capsys):
    root = folder(tmp_path / "audio")
    old = os.umask(0o022)
    try:
        status, _, _ = run(audio_folder.main, folder_argv(root, tmp_path / "out"), capsys)
    finally:
        os.umask(old)
    assert status == 0
    assert stat.S_IMODE(os.stat(tmp_path / "out" / "train.tsv").st_mode) == 0o644
    assert [p for p in os.listdir(tmp_path / "out") if p.startswith(".")] == []


def with_transcripts(tmp_path, capsys, text, names=("a/x.wav", "b/y.wav"), encoding="utf-8"):
    """audio_folder over ``names`` with a ``--transcripts`` listing of ``text``:
    (listing path, exit status, stdout, stderr)."""
    root = folder(tmp_path / "audio", names)
    listing = tmp_path / "transcripts.txt"
    listing.write_bytes(text.encode(encoding))
    argv = folder_argv(root, tmp_path / "out", "--transcripts", str(listing))
    return (str(listing), *run(audio_folder.main, argv, capsys))


def test_bare_stem_of_several_files_is_an_error_listing_them(tmp_path, capsys):
    listing, status, _, err = with_transcripts(tmp_path, capsys, "utt\thello\n",
                                               names=("s1/utt.wav", "s2/utt.wav"))
    assert status == 2
    assert err == (f"error: {listing}: key 'utt' matches 2 files (s1/utt.wav, s2/utt.wav): "
                   "use their paths relative to ROOT\n")


def test_conflicting_and_extra_transcripts_are_reported(tmp_path, capsys):
    text = "a/x.wav\thello\nx\tgoodbye\nb/y\tworld\n"
    listing, status, _, err = with_transcripts(tmp_path, capsys, text)
    assert status == 2
    assert err == (f"error: {listing}: conflicting transcripts for a/x.wav: 'a/x.wav': 'hello'; "
                   "'x': 'goodbye'\n")

    text = "a/x.wav\thello\nx\thello\nb/y\tworld\nzzz\textra\n"
    listing, status, out, _ = with_transcripts(tmp_path / "again", capsys, text)
    assert status == 0
    assert out.strip().endswith(f"; 1 transcript key of {listing} matched no audio file: 'zzz'")


def test_bom_unicode_separators_and_accents(tmp_path, capsys):
    text = "a/x\tCafé\u2028Naïve isn’t\r\nb/y\tStraße\n"
    _, status, _, err = with_transcripts(tmp_path, capsys, text, encoding="utf-8-sig")
    assert status == 0, err
    words = (tmp_path / "out" / "train.wrd").read_text().splitlines()
    assert sorted(words) == ["cafe naive isn't", "strasse"]
    assert normalize_words("Łódź, Øresund") == "lodz oresund"


def test_letters_without_a_z_form_are_reported(tmp_path, capsys):
    _, status, _, err = with_transcripts(tmp_path, capsys, "a/x\tda мир\nb/y\tok\n")
    assert status == 2
    audio = os.path.realpath(tmp_path / "audio" / "a" / "x.wav")
    assert err == (f"error: {audio}: transcript 'da мир' has letters with no a-z form: и, м, р "
                   "(transliterate it first: words must not lose letters)\n")


def test_timit_empty_phn_is_an_error(tmp_path, capsys):
    root = tmp_path / "timit"
    timit_tree(root)
    timit_utterance(root / "TRAIN/DR1/FCJF0", "SX99", phn="")
    argv = [str(root), "--dest", str(tmp_path / "out")]
    status, _, err = run(timit.main, argv, capsys)
    assert status == 2
    assert err.splitlines()[-1] == f"error: {root / 'TRAIN/DR1/FCJF0/SX99.WAV'}: empty transcript"
    status, out, _ = run(timit.main, argv + ["--skip-bad"], capsys)
    assert status == 0 and "skipped 1 file: 1 empty transcript" in out
    assert len(read_manifest(str(tmp_path / "out" / "train.tsv"))) == 3


def test_without_skip_bad_every_unusable_file_is_listed(tmp_path, capsys, monkeypatch):
    root = folder(tmp_path / "audio", names=("good.wav",))
    for name in ("a.wav", "b.wav", "c.wav"):
        (root / name).write_bytes(b"not audio")
    monkeypatch.setattr(common, "MAX_LISTED", 2)
    status, _, err = run(audio_folder.main, folder_argv(root, tmp_path / "out"), capsys)
    assert status == 2
    lines = err.splitlines()[-4:]
    assert lines[0].startswith("error: ") and lines[2:] == [
        "... and 1 more", "3 unusable files, nothing written (--skip-bad leaves them out)"]
    listed = {line.removeprefix("error: ") for line in lines[:2]}
    assert len(listed) == 2 and listed < {f"{root / name}: unreadable" for name in ("a.wav", "b.wav", "c.wav")}
    assert not (tmp_path / "out").exists()
