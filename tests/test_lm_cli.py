"""`python -m fairseq_vqw2v.cli.lm` end to end on a small text, and each of its errors."""

import string

import pytest
from fairseq.data import Dictionary

from fairseq_vqw2v.cli.lm import main
from fairseq_vqw2v.decoding import lm_build

TEXT = """The cat sat on the mat.
The dog -- a big one -- sat on the log!
A cat ran to the dog; the dog ran away.
"""


pytestmark = pytest.mark.skipif(lm_build.kenlm_tools_missing() is not None,
                                reason=str(lm_build.kenlm_tools_missing()))


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return path


@pytest.fixture
def letter_dict(tmp_path):
    """dict.ltr.txt without the apostrophe."""
    d = Dictionary()
    for symbol in "|" + string.ascii_lowercase:
        d.add_symbol(symbol)
    path = tmp_path / "dict.ltr.txt"
    d.save(str(path))
    return path


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_ngram_builds_a_kenlm_and_lexicon_the_decoder_loads(tmp_path, corpus, letter_dict, capsys):
    from fairseq_vqw2v.decoding.kenlm_decoder import KenLMLexiconDecoder

    out = tmp_path / "lm"
    rc, stdout, err = run(capsys, "ngram", corpus, out, "--discount-fallback",
                          "--letter-dict", letter_dict)
    assert rc == 0, err
    assert stdout.strip().splitlines()[-1].startswith("lm ngram: 4-gram of 3 sentences: ")
    arpa = (out / "lm.arpa").read_text()
    assert "\\4-grams:" in arpa and "\tdog\t" in arpa
    lexicon = (out / "lexicon.txt").read_text().splitlines()
    assert "away\ta w a y |" in lexicon and len(lexicon) == 13  # 13 distinct words
    assert lexicon[:2] == ["the\tt h e |", "dog\td o g |"]  # the most frequent words first
    rc, _, _ = run(capsys, "ngram", corpus, tmp_path / "lm2", "--discount-fallback", "--top", 2)
    assert (tmp_path / "lm2" / "lexicon.txt").read_text().splitlines() == lexicon[:2]
    decoder = KenLMLexiconDecoder(Dictionary.load(str(letter_dict)), str(out / "lexicon.txt"),
                                  str(out / "lm.bin"))
    assert decoder.word_dict.index_size() == 14  # 13 words and <unk>


def test_ngram_on_a_tiny_corpus_needs_discount_fallback(tmp_path, corpus, capsys):
    rc, _, err = run(capsys, "ngram", corpus, tmp_path / "lm")
    error = err[err.index("error: "):]
    assert rc == 1 and "lmplz (4-gram) failed" in error
    # lmplz's own advice is given in our CLI's spelling, and the last line says it again
    assert "--discount_fallback" not in error and "rerun with --discount-fallback" in error
    assert error.rstrip().endswith("Kneser-Ney discounts: rerun with --discount-fallback")
    assert not (tmp_path / "lm" / "lm.arpa").exists()


def test_lexicon_from_arpa_top_words_and_from_a_word_list(tmp_path, corpus, capsys):
    assert run(capsys, "ngram", corpus, tmp_path / "lm", "--discount-fallback")[0] == 0
    rc, stdout, _ = run(capsys, "lexicon", tmp_path / "lm" / "lm.arpa", tmp_path / "top.txt",
                        "--top", 2)
    assert rc == 0 and "lexicon of 2 words" in stdout
    top = (tmp_path / "top.txt").read_text().splitlines()
    assert len(top) == 2 and top[0] == "the\tt h e |"  # the highest unigram probability
    words = tmp_path / "words.txt"
    words.write_text("zebra\nDon't\nzebra\n")
    rc, _, _ = run(capsys, "lexicon", words, tmp_path / "w.txt")
    assert rc == 0
    assert (tmp_path / "w.txt").read_text() == "zebra\tz e b r a |\ndon't\td o n ' t |\n"


def test_charlm_data_with_a_char_kenlm(tmp_path, corpus, letter_dict, capsys):
    out = tmp_path / "char"
    rc, stdout, err = run(capsys, "charlm-data", corpus, out, "--char-order", 5,
                          "--discount-fallback", "--letter-dict", letter_dict)
    assert rc == 0, err
    assert "5-gram char KenLM" in stdout.splitlines()[-1]
    lines = (out / "train.txt").read_text().splitlines()
    assert lines[0] == "t h e | c a t | s a t | o n | t h e | m a t |" and len(lines) == 3
    d = Dictionary.load(str(out / "dict.txt"))
    assert d.symbols[d.nspecial] == "|" and d.count[d.index("|")] == 25  # one per word
    assert (out / "charlm.bin").stat().st_size > 0
    assert "\\5-grams:" in (out / "charlm.arpa").read_text()


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "corpus.txt: empty corpus"),
        ("123 456\n-- !!\n\n", "corpus.txt:1-3: no usable line"),
        ("the cat\nthe dog's bone\n", "corpus.txt:2: word \"dog's\" has [\"'\"] which the letter "
                                      "dictionary"),
    ],
)
def test_corpus_errors_name_the_file_and_line(tmp_path, letter_dict, capsys, content, message):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(content)
    for command in ("ngram", "charlm-data"):
        rc, _, err = run(capsys, command, corpus, tmp_path / "out", "--letter-dict", letter_dict)
        assert rc == 1 and message in err
    assert not (tmp_path / "out" / "lm.arpa").exists()


def test_missing_inputs_and_tools(tmp_path, corpus, letter_dict, capsys, monkeypatch):
    rc, _, err = run(capsys, "ngram", tmp_path / "nope.txt", tmp_path / "lm")
    assert rc == 1 and "nope.txt: corpus not found" in err
    rc, _, err = run(capsys, "lexicon", corpus, tmp_path / "x.txt", "--letter-dict",
                     tmp_path / "nodict.txt")
    assert rc == 1 and "nodict.txt: letter dictionary not found" in err
    with pytest.raises(SystemExit):
        main(["ngram", str(corpus), str(tmp_path / "lm"), "--order", "0"])
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(lm_build, "KENLM_BIN", str(tmp_path / "empty"))
    rc, _, err = run(capsys, "ngram", corpus, tmp_path / "lm", "--discount-fallback")
    assert rc == 1 and "'lmplz' not found" in err and "make setup" in err
