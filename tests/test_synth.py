"""The embedded corpus generator (manifests/synth.py): determinism, labels, held-out text."""

import hashlib
import os
import re

import pytest
import soundfile as sf

from fairseq_vqw2v.constants import SAMPLE_RATE
from fairseq_vqw2v.data.manifest import read_manifest
from fairseq_vqw2v.data.text_norm import words_to_letters
from manifests import synth
from manifests.synth_text import load_sentences, normalize, split_sentences

HOURS = 0.01
LM_WORDS = 20000


def build(out, seed=1, jobs=2, hours=HOURS):
    return synth.build(str(out), hours=hours, seed=seed, jobs=jobs, lm_words=LM_WORDS)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """Two corpora with seed 1 (built with different worker counts) and one with seed 2."""
    root = tmp_path_factory.mktemp("synth")
    build(root / "a", seed=1, jobs=2)
    build(root / "b", seed=1, jobs=1)
    build(root / "c", seed=2, jobs=2)
    return root


def file_hashes(corpus):
    """Relative path -> sha256 of every file, except the tsv root line (an absolute path)."""
    hashes = {}
    for dirpath, _, names in os.walk(corpus):
        for name in names:
            path = os.path.join(dirpath, name)
            if name == "corpus.json":
                continue
            with open(path, "rb") as f:
                data = f.read()
            if name.endswith(".tsv"):
                data = data.split(b"\n", 1)[1]
            hashes[os.path.relpath(path, corpus)] = hashlib.sha256(data).hexdigest()
    return hashes


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def test_same_seed_same_files(corpora):
    a, b = file_hashes(corpora / "a"), file_hashes(corpora / "b")
    assert sum(name.endswith(".wav") for name in a) > 10
    assert a == b


def test_different_seed_differs(corpora):
    a, c = file_hashes(corpora / "a"), file_hashes(corpora / "c")
    wavs_a = {h for name, h in a.items() if name.endswith(".wav")}
    wavs_c = {h for name, h in c.items() if name.endswith(".wav")}
    assert not wavs_a & wavs_c
    assert read_lines(corpora / "a" / "train.wrd") != read_lines(corpora / "c" / "train.wrd")


@pytest.mark.parametrize("split", synth.SPLITS)
def test_labels_line_up(corpora, split):
    corpus = corpora / "a"
    manifest = read_manifest(str(corpus / f"{split}.tsv"))
    words = read_lines(corpus / f"{split}.wrd")
    letters = read_lines(corpus / f"{split}.ltr")
    phones = read_lines(corpus / f"{split}.phn")
    assert len(manifest.entries) == len(words) == len(letters) == len(phones) >= 1
    for i, (rel, num_samples) in enumerate(manifest.entries):
        info = sf.info(manifest.audio_path(i))
        assert (info.frames, info.samplerate, info.channels) == (num_samples, SAMPLE_RATE, 1)
        assert 0.5 < num_samples / SAMPLE_RATE < 10, rel
        assert re.fullmatch(r"[a-z']+( [a-z']+)*", words[i])
        assert synth.MIN_WORDS <= len(words[i].split()) <= synth.MAX_WORDS
        assert letters[i] == words_to_letters(words[i])
        utt_phones = phones[i].split()
        assert len(utt_phones) > len(words[i].split())
        assert set(utt_phones) <= synth.FLITE_PHONES, rel


def test_split_sizes_follow_hours(corpora):
    corpus = corpora / "a"
    seconds = {}
    for split in synth.SPLITS:
        manifest = read_manifest(str(corpus / f"{split}.tsv"))
        seconds[split] = sum(n for _, n in manifest.entries) / SAMPLE_RATE
        # Exactly the utterances of the manifest are on disk, nothing stale.
        assert len(os.listdir(corpus / "wav" / split)) == len(manifest.entries)
    assert HOURS * 3600 <= seconds["train"] < HOURS * 3600 + 10
    for split in ("valid", "test"):
        assert HOURS * 300 <= seconds[split] < HOURS * 300 + 10


def test_held_out_sentences_absent_from_train_and_lm(corpora):
    corpus = corpora / "a"
    train = set(read_lines(corpus / "train.wrd"))
    valid = set(read_lines(corpus / "valid.wrd"))
    test = set(read_lines(corpus / "test.wrd"))
    lm = read_lines(corpus / "lm" / "lm.txt")
    assert not valid & test
    assert not (valid | test) & train
    assert not (valid | test) & set(lm)
    assert LM_WORDS <= sum(len(line.split()) for line in lm) < LM_WORDS + synth.MAX_WORDS * 10
    lexicon = dict(line.split("\t") for line in read_lines(corpus / "lm" / "lexicon.txt"))
    for word in " ".join(lm[:50] + sorted(train)).split():
        assert lexicon[word] == words_to_letters(word)


def test_rerun_with_same_parameters_does_nothing(corpora):
    corpus = corpora / "a"
    wav = corpus / "wav" / "train" / sorted(os.listdir(corpus / "wav" / "train"))[0]
    mtime = os.stat(wav).st_mtime_ns
    assert build(corpus, seed=1)["skipped"]
    assert os.stat(wav).st_mtime_ns == mtime


def test_rebuild_with_other_size_leaves_no_stale_files(tmp_path):
    build(tmp_path, hours=0.004)
    before = len(os.listdir(tmp_path / "wav" / "train"))
    meta = build(tmp_path, hours=0.002)
    assert not meta["skipped"]
    after = len(read_manifest(str(tmp_path / "train.tsv")).entries)
    assert after == meta["splits"]["train"]["utterances"] < before
    assert len(os.listdir(tmp_path / "wav" / "train")) == after


def test_unlabeled_hours_add_a_pretrain_split_and_leave_the_labeled_ones(corpora, tmp_path):
    """The unlabeled audio follows train's last sentence in its stream, so the labeled splits are
    the files of the corpus without it; ``pretrain`` lists train's audio, then the unlabeled."""
    meta = synth.build(str(tmp_path), hours=HOURS, seed=1, jobs=2, lm_words=LM_WORDS,
                       unlabeled_hours=HOURS)
    assert meta["splits"].keys() == {"train", "valid", "test", "pretrain"}
    labeled = file_hashes(corpora / "a")
    assert {n: h for n, h in file_hashes(tmp_path).items() if n in labeled} == labeled
    train = read_manifest(str(tmp_path / "train.tsv")).entries
    pretrain = read_manifest(str(tmp_path / "pretrain.tsv")).entries
    unlabeled = pretrain[len(train):]
    assert pretrain[:len(train)] == train and unlabeled
    assert all(rel.startswith("unlabeled/") for rel, _ in unlabeled)
    assert len(os.listdir(tmp_path / "wav" / "unlabeled")) == len(unlabeled)
    assert HOURS * 3600 <= sum(n for _, n in unlabeled) / SAMPLE_RATE < HOURS * 3600 + 10
    words = read_lines(tmp_path / "pretrain.wrd")
    assert len(words) == len(pretrain) == len(read_lines(tmp_path / "pretrain.align"))
    held_out = set(read_lines(tmp_path / "valid.wrd")) | set(read_lines(tmp_path / "test.wrd"))
    assert not held_out & set(words) and not set(words[:len(train)]) & set(words[len(train):])
    assert synth.build(str(tmp_path), hours=HOURS, seed=1, jobs=2, lm_words=LM_WORDS,
                       unlabeled_hours=HOURS)["skipped"]
    # the parameters without unlabeled audio are another corpus: rebuilt, and complete as before
    assert not synth.build(str(tmp_path), hours=HOURS, seed=1, jobs=2, lm_words=LM_WORDS)["skipped"]
    assert file_hashes(tmp_path) == labeled


def test_default_lm_text_has_a_million_words():
    sentences, counts = load_sentences()
    assert set(counts) == {"wordnet", "bible", "fortunes"} and min(counts.values()) > 10000
    held_out = set(sentences[:500])
    lines, words = synth.lm_sentences(sentences, held_out, 0)
    assert words >= 1_000_000
    assert not held_out & set(lines)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Don't stop -- 'Now', he said!", "don't stop now he said"),
        ("A self-contained  entity (living or not)", "a self contained entity living or not"),
        ("In 1951 it rained", None),
        ("caf\u00e9 au lait", None),
        ("x = y", None),
        ("\"\" -- ...", None),
    ],
)
def test_normalize(raw, expected):
    assert normalize(raw) == expected


def test_split_sentences():
    text = "In the beginning. And the earth; was void?\nYes: it was\n\nNew paragraph"
    assert split_sentences(text) == [
        "In the beginning.", "And the earth;", "was void?", "Yes:", "it was", "New paragraph"
    ]


def test_parse_phones_drops_silence():
    assert synth.parse_phones("pau:0.184 dh:0.233 ax:0.276 pau:0.400\n") == ["dh", "ax"]


def test_voice_settings_are_a_function_of_position():
    settings = [synth.voice_settings(7, "train", i) for i in range(200)]
    assert settings == [synth.voice_settings(7, "train", i) for i in range(200)]
    assert {v for v, _, _ in settings} == set(synth.VOICES)
    assert all(f0 == 1.0 for v, _, f0 in settings if v not in synth.PITCH_VOICES)
    assert len({f0 for v, _, f0 in settings if v in synth.PITCH_VOICES}) > 10


def test_missing_flite_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(synth.SynthError, match="install_system_deps"):
        build(tmp_path / "out")


def test_negative_unlabeled_hours_is_a_clear_error_and_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="--unlabeled-hours must not be negative, got -1"):
        synth.build(str(tmp_path / "c"), hours=HOURS, unlabeled_hours=-1)
    assert not (tmp_path / "c").exists()
