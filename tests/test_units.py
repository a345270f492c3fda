"""Unit token I/O, the lazy unit dictionary, usage statistics and the frequency plot."""

import math
from collections import Counter

import pytest
import torch
from fairseq.data import Dictionary

from fairseq_vqw2v.units import (
    UnitDictionary,
    codes_to_tokens,
    plot_code_frequencies,
    read_dictionary_counts,
    tokens_to_codes,
    usage_stats,
    write_dictionary,
    write_unit_lines,
)


def test_tokens_round_trip_and_bad_tokens():
    codes = torch.tensor([[12, 301], [0, 0], [319, 7]])
    tokens = codes_to_tokens(codes)
    assert tokens == ["12-301", "0-0", "319-7"]
    assert torch.equal(tokens_to_codes(" ".join(tokens), 2), codes)
    assert tokens_to_codes("", 2).shape == (0, 2)
    with pytest.raises(ValueError, match="train.src:4: token '12-x'"):
        tokens_to_codes("1-2 12-x", 2, "train.src:4")
    with pytest.raises(ValueError, match="not 2 indices"):
        tokens_to_codes("1-2-3", 2)


def test_unit_dictionary_maps_flat_indices_to_tokens():
    d = UnitDictionary()
    d.set_codebook(320, 2)
    codes = torch.tensor([[12, 301], [0, 0], [319, 319]])
    flat = d.flat_index(codes)
    assert flat.tolist() == [4 + 12 * 320 + 301, 4, 4 + 320 * 320 - 1]
    assert d.string(flat) == "12-301 0-0 319-319"
    assert d.index("12-301") == int(flat[0]) and d.index("<pad>") == d.pad()
    assert len(d) == 4 + 320**2
    with pytest.raises(ValueError, match="int32"):
        UnitDictionary().set_codebook(320, 4)


def test_src_and_dict_files(tmp_path):
    lines = [["1-2", "1-2", "3-4"], ["3-4", "1-2"], []]
    counts = write_unit_lines(str(tmp_path / "train.src"), lines)
    assert (tmp_path / "train.src").read_text() == "1-2 1-2 3-4\n3-4 1-2\n\n"
    write_dictionary(str(tmp_path / "dict.txt"), counts)
    assert (tmp_path / "dict.txt").read_text() == "1-2 3\n3-4 2\n"
    assert read_dictionary_counts(str(tmp_path / "dict.txt")) == Counter({"1-2": 3, "3-4": 2})
    fairseq_dict = Dictionary.load(str(tmp_path / "dict.txt"))
    assert fairseq_dict.index("3-4") == fairseq_dict.nspecial + 1
    (tmp_path / "bad.txt").write_text("1-2 3\n3-4\n")
    with pytest.raises(ValueError, match="bad.txt:2"):
        read_dictionary_counts(str(tmp_path / "bad.txt"))


def test_usage_stats_and_plot(tmp_path):
    # group 0 uses codes 0 and 1 equally, group 1 always code 5
    counts = Counter({"0-5": 50, "1-5": 50})
    stats = usage_stats(counts, num_vars=320, groups=2)
    assert stats["tokens"] == 100 and stats["distinct_tokens"] == 2
    assert stats["distinct_codes_per_group"] == [2, 1]
    assert stats["code_perplexity"] == pytest.approx(2.0 + 1.0)
    assert stats["token_perplexity"] == pytest.approx(2.0)
    assert stats["bitrate"] == pytest.approx(100 * 2 * math.log2(320))
    assert stats["possible_tokens"] == 102400 and stats["max_code_perplexity"] == 640
    plot_code_frequencies(counts, str(tmp_path / "freq.png"))
    assert (tmp_path / "freq.png").read_bytes()[:4] == b"\x89PNG"


def test_codebook_shape_needs_a_quantizing_vq_wav2vec_model():
    from fairseq.models.wav2vec.wav2vec import Wav2VecConfig, Wav2VecModel

    from fairseq_vqw2v.models.vq_wav2vec import VqWav2VecModel, arch_config
    from fairseq_vqw2v.units import codebook_shape

    tiny = "[(16, 10, 5), (16, 8, 4)]"
    model = VqWav2VecModel(arch_config("vq_wav2vec_tiny", conv_feature_layers=tiny, vq_vars=40))
    assert codebook_shape(model) == (40, 2)
    with pytest.raises(ValueError, match="vq_type none"):
        codebook_shape(VqWav2VecModel(arch_config("vq_wav2vec_tiny", vq_type="none")))
    reference = Wav2VecModel(Wav2VecConfig(conv_feature_layers=tiny, infonce=False))
    with pytest.raises(ValueError, match="cli.convert"):
        codebook_shape(reference)
