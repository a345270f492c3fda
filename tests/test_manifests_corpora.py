"""Corpus-layout prep scripts (LibriSpeech, TIMIT, WSJ) and the TIMIT phone folding."""

import os

import fairseq
import pytest

from fairseq_vqw2v.data.manifest import read_manifest
from fairseq_vqw2v.data.text_norm import words_to_letters
from fairseq_vqw2v.data.phones import FOLD_61_TO_39, TIMIT_39, TIMIT_61, fold_timit_phones
from manifests import librispeech, timit, wsj
from manifests.wsj import clean_wsj_transcript

from _manifests_util import run, write_audio


def split_files(dest, split):
    """(manifest paths, {ext: label lines}) of one written split."""
    paths = [p for p, _ in read_manifest(str(dest / f"{split}.tsv")).entries]
    labels = {}
    for ext in ("wrd", "ltr", "phn"):
        if (dest / f"{split}.{ext}").exists():
            labels[ext] = (dest / f"{split}.{ext}").read_text().splitlines()
    return paths, labels


# --- phones ----------------------------------------------------------------------------------


def test_timit_phone_sets_have_61_and_39_phones():
    assert len(TIMIT_61) == len(set(TIMIT_61)) == 61
    assert len(TIMIT_39) == 39 and "sil" in TIMIT_39
    assert all(FOLD_61_TO_39[p] in TIMIT_39 for p in TIMIT_61 if p != "q")


@pytest.mark.parametrize(
    "source, folded",
    [
        ("ao ax ax-h axr hv ix el em en nx eng zh ux", "aa ah ah er hh ih l m n n ng sh uw"),
        (
            "h# pcl p tcl t kcl k bcl b dcl d gcl g pau epi h#",
            "sil sil p sil t sil k sil b sil d sil g sil sil sil",
        ),
        ("q aa q iy", "aa iy"),
        ("aa ae ah aw ay dx", "aa ae ah aw ay dx"),
    ],
    ids=["vowels-consonants", "closures-silence", "glottal-stop", "unchanged"],
)
def test_fold_timit_phones(source, folded):
    assert fold_timit_phones(source.split()) == folded.split()
    assert fold_timit_phones(folded.split()) == folded.split()  # idempotent


def test_fold_timit_phones_rejects_unknown_phone():
    with pytest.raises(ValueError, match="'xx'"):
        fold_timit_phones(["aa", "xx"])


def test_timit_speaker_lists_match_fairseq_timit_setup():
    examples = os.path.join(os.path.dirname(fairseq.__file__), "examples")
    config = os.path.join(examples, "wav2vec", "unsupervised", "config", "timit_matched")

    def speakers(split):
        with open(os.path.join(config, f"{split}.uid")) as f:
            return {line.split("_")[0] for line in f if line.strip()}

    assert speakers("test") == timit.CORE_TEST_SPEAKERS and len(timit.CORE_TEST_SPEAKERS) == 24
    assert speakers("valid") == timit.DEV_SPEAKERS and len(timit.DEV_SPEAKERS) == 50


# --- LibriSpeech -----------------------------------------------------------------------------


def libri_tree(root):
    texts = {
        "dev-clean/84/121123": ["GO DO YOU HEAR", "BUT IN LESS THAN FIVE MINUTES"],
        "dev-clean/84/121550": ["AND THE STAIRCASE'S TOP"],
        "train-clean-100/19/198": ["NORTHANGER ABBEY", "CHAPTER ONE"],
        "train-other-500/20/205": ["A B"],
    }
    for folder, lines in texts.items():
        speaker, chapter = folder.split("/")[1:]
        trans = []
        for i, text in enumerate(lines):
            utt = f"{speaker}-{chapter}-{i:04d}"
            write_audio(root / folder / f"{utt}.flac", seed=i)
            trans.append(f"{utt} {text}\n")
        (root / folder / f"{speaker}-{chapter}.trans.txt").write_text("".join(trans))


def test_librispeech_manifests_and_labels(tmp_path, capsys):
    root = tmp_path / "LibriSpeech"
    libri_tree(root)
    dest = tmp_path / "out"
    splits = "dev-clean,train=train-clean-100+train-other-500"
    argv = [str(root), "--dest", str(dest), "--splits", splits]
    status, out, _ = run(librispeech.main, argv, capsys)
    assert status == 0 and "wrote dev-clean (3 files" in out and "train (3 files" in out
    paths, labels = split_files(dest, "dev-clean")
    assert paths == [
        "dev-clean/84/121123/84-121123-0000.flac",
        "dev-clean/84/121123/84-121123-0001.flac",
        "dev-clean/84/121550/84-121550-0000.flac",
    ]
    assert labels["wrd"] == [
        "go do you hear",
        "but in less than five minutes",
        "and the staircase's top",
    ]
    assert labels["ltr"][2] == "a n d | t h e | s t a i r c a s e ' s | t o p |"
    paths, labels = split_files(dest, "train")
    assert [p.split("/")[0] for p in paths] == ["train-clean-100"] * 2 + ["train-other-500"]
    assert labels["wrd"] == ["northanger abbey", "chapter one", "a b"]
    assert read_manifest(str(dest / "train.tsv")).root == os.path.realpath(root)
    assert read_manifest(str(dest / "train.tsv")).entries[0][1] == 3200


def test_librispeech_audio_without_transcript_line(tmp_path, capsys):
    root = tmp_path / "LibriSpeech"
    libri_tree(root)
    orphan = root / "dev-clean/84/121550/84-121550-0007.flac"
    write_audio(orphan)
    argv = [str(root), "--dest", str(tmp_path / "out"), "--splits", "dev-clean"]
    status, _, err = run(librispeech.main, argv, capsys)
    assert status == 2 and f"error: {orphan}: missing transcript" in err
    status, out, _ = run(librispeech.main, argv + ["--skip-bad"], capsys)
    assert status == 0 and "skipped 1 file: 1 missing transcript" in out
    assert len(read_manifest(str(tmp_path / "out" / "dev-clean.tsv"))) == 3


def test_librispeech_malformed_trans_line(tmp_path, capsys):
    root = tmp_path / "LibriSpeech"
    libri_tree(root)
    trans = root / "dev-clean/84/121550/84-121550.trans.txt"
    trans.write_text("84-121550-0000 AND THE\n84-121550-0001\n")
    argv = [str(root), "--dest", str(tmp_path / "out"), "--splits", "dev-clean"]
    status, _, err = run(librispeech.main, argv, capsys)
    assert status == 2 and f"error: {trans}:2: " in err
    assert not (tmp_path / "out").exists()


def test_librispeech_unknown_split_folder(tmp_path, capsys):
    root = tmp_path / "LibriSpeech"
    libri_tree(root)
    argv = [str(root), "--dest", str(tmp_path / "out"), "--splits", "test-clean"]
    status, _, err = run(librispeech.main, argv, capsys)
    assert status == 2 and "test-clean: no such LibriSpeech folder" in err


# --- TIMIT -----------------------------------------------------------------------------------

PHN = "0 2000 h#\n2000 2400 sh\n2400 2600 ix\n2600 2700 q\n2700 3000 ax-h\n3000 3200 h#\n"
WRD = "2000 2600 she\n2700 3000 had\n"


def timit_utterance(folder, name, upper=True, nist=True, phn=PHN):
    stem = folder / (name.upper() if upper else name.lower())
    ext = (lambda e: e.upper()) if upper else (lambda e: e.lower())
    if nist:
        write_audio(f"{stem}.{ext('wav')}", format="NIST", subtype="PCM_16")
    else:
        write_audio(f"{stem}.{ext('wav')}")
    if phn is not None:
        open(f"{stem}.{ext('phn')}", "w").write(phn)
    open(f"{stem}.{ext('wrd')}", "w").write(WRD)
    open(f"{stem}.{ext('txt')}", "w").write("0 3200 She had your dark suit.\n")


def timit_tree(root, upper=True, nist=True):
    case = (lambda s: s.upper()) if upper else (lambda s: s.lower())
    layout = {
        "TRAIN/DR1/FCJF0": ["SA1", "SI648", "SX37"],
        "TRAIN/DR2/MABC0": ["SI1"],
        "TEST/DR1/FDHC0": ["SA2", "SI1559", "SX29"],  # core test
        "TEST/DR4/FADG0": ["SI1279"],  # development set
        "TEST/DR3/MXYZ0": ["SX1"],  # complete test set only
    }
    for folder, names in layout.items():
        for name in names:
            timit_utterance(root / case(folder), name, upper=upper, nist=nist)


@pytest.mark.parametrize(
    "upper, nist", [(True, True), (False, False)], ids=["NIST-upper", "riff-lower"]
)
def test_timit_splits_and_folded_phones(tmp_path, capsys, upper, nist):
    root = tmp_path / "timit"
    timit_tree(root, upper=upper, nist=nist)
    # a converted copy beside the SPHERE original must not count twice
    converted = "TRAIN/DR1/FCJF0/SI648.WAV.wav" if upper else "train/dr1/fcjf0/si648.wav.wav"
    write_audio(root / converted)
    dest = tmp_path / "out"
    status, out, _ = run(timit.main, [str(root), "--dest", str(dest)], capsys)
    assert status == 0, out
    speakers = {}
    for split in ("train", "valid", "test"):
        paths, labels = split_files(dest, split)
        speakers[split] = sorted({p.split("/")[2].upper() for p in paths})
        assert not any(os.path.basename(p).upper().startswith("SA") for p in paths)
        assert set(labels["phn"]) == {"sil sh ih ah sil"}
        assert set(labels["wrd"]) == {"she had"}
        assert set(labels["ltr"]) == {words_to_letters("she had")}
    assert speakers == {"train": ["FCJF0", "MABC0"], "valid": ["FADG0"], "test": ["FDHC0"]}
    assert not any(p.lower().endswith(".wav.wav") for p in split_files(dest, "train")[0])
    assert len(read_manifest(str(dest / "train.tsv"))) == 3
    assert len(read_manifest(str(dest / "test.tsv"))) == 2


def test_timit_complete_test_set_and_61_phones(tmp_path, capsys):
    root = tmp_path / "timit"
    timit_tree(root)
    dest = tmp_path / "out"
    argv = [str(root), "--dest", str(dest), "--test-set", "complete", "--phones", "61"]
    assert run(timit.main, argv, capsys)[0] == 0
    paths, labels = split_files(dest, "test")
    assert sorted({p.split("/")[2] for p in paths}) == ["FADG0", "FDHC0", "MXYZ0"]
    assert set(labels["phn"]) == {"h# sh ix q ax-h h#"}


def test_timit_words_from_txt_without_wrd(tmp_path, capsys):
    root = tmp_path / "timit"
    timit_tree(root)
    for wrd in root.rglob("*.WRD"):
        wrd.unlink()
    dest = tmp_path / "out"
    assert run(timit.main, [str(root), "--dest", str(dest)], capsys)[0] == 0
    assert set(split_files(dest, "train")[1]["wrd"]) == {"she had your dark suit"}


def test_timit_missing_phn_and_unknown_phone(tmp_path, capsys):
    root = tmp_path / "timit"
    timit_tree(root)
    timit_utterance(root / "TRAIN/DR1/FCJF0", "SX99", phn=None)
    argv = [str(root), "--dest", str(tmp_path / "out")]
    status, _, err = run(timit.main, argv, capsys)
    assert status == 2 and f"{root / 'TRAIN/DR1/FCJF0/SX99.WAV'}: missing transcript" in err
    status, out, _ = run(timit.main, argv + ["--skip-bad"], capsys)
    assert status == 0 and "skipped 1 file: 1 missing transcript" in out

    bad_phn = root / "TEST/DR1/FDHC0/SX29.PHN"
    bad_phn.write_text("0 10 h#\n10 20 zz\n")
    status, _, err = run(timit.main, argv + ["--skip-bad"], capsys)
    assert status == 2 and f"error: {bad_phn}:2: unknown TIMIT phone 'zz'" in err


# --- WSJ -------------------------------------------------------------------------------------


def test_clean_wsj_transcript():
    text = 'THE [loud_breath] SHARE\'S PRICE ,COMMA *ROSE* ~ <NOISE> "DOUBLE-QUOTE SHARP- LY {door}'
    assert clean_wsj_transcript(text) == "THE SHARE'S PRICE ROSE SHARP- LY"


def test_wsj_listings(tmp_path, capsys):
    root = tmp_path / "wsj"
    write_audio(root / "si284" / "a.wav")
    write_audio(root / "si284" / "b.wav", seed=1)
    write_audio(root / "dev93" / "c.wav", seed=2)
    write_audio(tmp_path / "elsewhere" / "d.wav", seed=3)
    (tmp_path / "train.tsv").write_text(
        "011c0201\tsi284/a.wav\tTHE SALE ,COMMA [breath] OF THE HOTELS\n"
        "011c0202\tsi284/b.wav\tIT'S .PERIOD\n"
    )
    (tmp_path / "dev.tsv").write_text(
        f"4k0c0301\tdev93/c.wav\tNEW YORK\n\n4k0c0302\t{tmp_path / 'elsewhere' / 'd.wav'}\tOK\n"
    )
    dest = tmp_path / "out"
    argv = [str(root), "--dest", str(dest), "--listing", f"train={tmp_path / 'train.tsv'}",
            "--listing", f"valid={tmp_path / 'dev.tsv'}"]
    status, out, _ = run(wsj.main, argv, capsys)
    assert status == 0, out
    paths, labels = split_files(dest, "train")
    assert paths == ["si284/a.wav", "si284/b.wav"]
    assert labels["wrd"] == ["the sale of the hotels", "it's"]
    assert labels["ltr"][1] == "i t ' s |"
    paths, labels = split_files(dest, "valid")
    manifest = read_manifest(str(dest / "valid.tsv"))
    elsewhere = os.path.realpath(tmp_path / "elsewhere" / "d.wav")
    assert os.path.realpath(manifest.audio_path(1)) == elsewhere
    assert labels["wrd"] == ["new york", "ok"]


@pytest.mark.parametrize(
    "listing, line, reason",
    [
        ("u1\ta.wav\tHELLO\nu2\ta.wav\n", 2, "expected 'UTT_ID<TAB>AUDIO<TAB>TRANSCRIPT'"),
        ("u1\ta.wav\tHELLO\n\nu1\ta.wav\tAGAIN\n", 3, "utterance 'u1' already on line 1"),
    ],
    ids=["two-fields", "duplicate-id"],
)
def test_wsj_bad_listing_names_line(tmp_path, capsys, listing, line, reason):
    write_audio(tmp_path / "wsj" / "a.wav")
    path = tmp_path / "l.tsv"
    path.write_text(listing)
    argv = [str(tmp_path / "wsj"), "--dest", str(tmp_path / "out"), "--listing", f"test={path}"]
    status, _, err = run(wsj.main, argv, capsys)
    assert status == 2 and f"error: {path}:{line}: {reason}" in err


def test_wsj_missing_audio_and_empty_transcript(tmp_path, capsys):
    root = tmp_path / "wsj"
    write_audio(root / "a.wav")
    write_audio(root / "c.wav")
    (tmp_path / "l.tsv").write_text("u1\ta.wav\tHI\nu2\tmissing.wav\tTHERE\nu3\tc.wav\t[noise]\n")
    argv = [str(root), "--dest", str(tmp_path / "out"), "--listing", f"test={tmp_path / 'l.tsv'}"]
    status, _, err = run(wsj.main, argv, capsys)
    assert status == 2 and f"error: {root / 'missing.wav'}: unreadable" in err
    status, out, _ = run(wsj.main, argv + ["--skip-bad"], capsys)
    assert status == 0 and "skipped 2 files: 1 unreadable, 1 empty transcript" in out
    assert (tmp_path / "out" / "test.wrd").read_text() == "hi\n"
