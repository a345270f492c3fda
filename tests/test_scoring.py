"""Error rates on hand-computed cases, and the LM weight / word score search."""

import pytest

from fairseq_vqw2v.data.text_norm import words_to_letters
from fairseq_vqw2v.decoding.scoring import PLATEAU_OUTPUT_RATIO, ErrorRates, below_plateau_bound, letters_to_words, score
from fairseq_vqw2v.decoding.tuning import format_table, grid, random_points, search


def ltr(words):
    return words_to_letters(words)


def test_letters_to_words():
    assert letters_to_words("h i | y o u |".split()) == "hi you"
    assert letters_to_words("| h i | | y o u".split()) == "hi you"
    assert letters_to_words([]) == ""


def test_perfect_hypothesis():
    rates = score([ltr("hello world")], [ltr("hello world")], "ltr")
    assert (rates.word_errors, rates.words, rates.unit_errors, rates.units) == (0, 2, 0, 12)
    assert rates.wer == 0.0 and rates.uer == 0.0


def test_substitution_insertion_deletion_counts():
    # "the cat sat" -> "the bat sat down": one substituted word, one inserted word;
    # letters: c->b (1) + "d o w n |" inserted (5)
    rates = score([ltr("the cat sat")], [ltr("the bat sat down")], "ltr")
    assert (rates.word_errors, rates.words) == (2, 3)
    assert (rates.unit_errors, rates.units) == (6, 12)
    assert rates.wer == pytest.approx(200 / 3)
    assert rates.uer == pytest.approx(50.0)
    # deletion of a word and its boundary: 2 letters + "|"
    rates = score([ltr("a bc d")], [ltr("a d")], "ltr")
    assert (rates.word_errors, rates.words, rates.unit_errors, rates.units) == (1, 3, 3, 7)


def test_missing_word_boundary_counts_as_one_letter_error():
    rates = score([ltr("foo bar")], [ltr("foobar")], "ltr")
    assert (rates.word_errors, rates.words) == (2, 2)  # one substitution + one deletion
    assert (rates.unit_errors, rates.units) == (1, 8)


def test_decoder_silences_are_not_errors():
    rates = score([ltr("hi you")], ["| h i | | y o u"], "ltr")
    assert rates.unit_errors == 0 and rates.word_errors == 0


def test_empty_hypothesis_is_all_deletions():
    rates = score([ltr("hello world")], [""], "ltr")
    assert rates.wer == 100.0 and rates.uer == 100.0


def test_empty_reference_is_an_error_naming_the_utterance():
    with pytest.raises(ValueError, match="utterance 2: empty reference"):
        score([ltr("a"), "  "], [ltr("a"), ltr("a")], "ltr")


def test_bad_arguments():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        score(["a |", "b |"], ["a |"], "ltr")
    with pytest.raises(ValueError, match="labels must be one of"):
        score(["a |"], ["a |"], "wrd")


def test_per_after_folding():
    # ao folds to aa, pcl to sil, q is deleted: all correct after folding
    rates = score(["sil aa b ah sil"], ["pau ao q b ax pcl"], "phn")
    assert rates.unit_kind == "phone" and rates.wer is None
    assert (rates.unit_errors, rates.units) == (0, 5)
    rates = score(["sil aa b"], ["sil iy b d"], "phn")  # 1 substitution + 1 insertion
    assert (rates.unit_errors, rates.units) == (2, 3)
    assert rates.unit_name == "PER"
    with pytest.raises(ValueError, match="utterance 1: unknown TIMIT phone 'xx'"):
        score(["aa"], ["xx"], "phn")


def test_merge_adds_counts_and_checks_kinds():
    a = score([ltr("a b")], [ltr("a c")], "ltr")
    b = score([ltr("d")], [ltr("d")], "ltr")
    total = a + b
    assert (total.word_errors, total.words, total.unit_errors, total.units) == (1, 3, 1, 6)
    assert a.merge(b) == total
    with pytest.raises(ValueError, match="cannot merge letter and phone"):
        a + ErrorRates(unit_kind="phone")
    assert ErrorRates().wer is None and ErrorRates().uer is None
    assert str(total) == "WER 33.33 (1/3), LER 16.67 (1/6), 6 letters output"


def test_output_ratio_counts_what_the_hypotheses_emit():
    # a model on CTC's all-blank plateau emits nothing: every reference unit is a deletion
    silent = score([ltr("a b"), ltr("c")], ["", ""], "ltr")
    assert (silent.uer, silent.output_ratio) == (100.0, 0.0)
    # emitted units count after the scoring's normalisation (leading, doubled boundaries dropped)
    rates = score([ltr("ab")], ["| a b c | |"], "ltr")
    assert (rates.hyp_units, rates.units, rates.output_ratio) == (4, 3, 4 / 3)
    # phones count after folding (q is deleted)
    assert score(["sil aa b"], ["q aa"], "phn").output_ratio == 1 / 3
    assert ErrorRates().output_ratio is None
    assert (silent + rates).hyp_units == 4


def test_on_plateau_below_half_the_reference_units():
    assert PLATEAU_OUTPUT_RATIO == 0.5
    assert score(["aa b k d"], ["aa"], "phn").on_plateau  # 0.25 phones per reference phone
    assert not score(["aa b k d"], ["aa b"], "phn").on_plateau  # at the bound, not below it
    assert not ErrorRates().on_plateau  # nothing scored yet
    assert below_plateau_bound(0.49) and not below_plateau_bound(0.5)


def test_tuning_search_ranks_points_and_formats_a_table():
    refs = [ltr("a b"), ltr("c")]

    def decode(lm_weight, word_score):  # the hypotheses get better as lm_weight grows
        return [ltr("a b"), ltr("c")] if lm_weight >= 1 else [ltr("a x"), ltr("c")]

    points = grid([0.5, 2.0], [-1.0, 0.0])
    assert points == [(0.5, -1.0), (0.5, 0.0), (2.0, -1.0), (2.0, 0.0)]
    rows = search(decode, refs, "ltr", points)
    assert [(r["lm_weight"], r["word_score"]) for r in rows[:2]] == [(2.0, -1.0), (2.0, 0.0)]
    assert rows[0]["wer"] == 0.0 and rows[-1]["wer"] == pytest.approx(100 / 3)
    table = format_table(rows)
    assert table.splitlines()[2] == "| 2 | -1 | 0.00 | 0.00 |"
    drawn = random_points(5, (0.0, 4.0), (-3.0, 1.0), seed=1)
    assert drawn == random_points(5, (0.0, 4.0), (-3.0, 1.0), seed=1) and len(set(drawn)) == 5
    assert all(0 <= w <= 4 and -3 <= s <= 1 for w, s in drawn)
    with pytest.raises(ValueError, match="no .* point"):
        search(decode, refs, "ltr", [])
