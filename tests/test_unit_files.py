"""The unit file format: tokens and codes, ``.src`` lines, ``dict.txt``, the lazy unit dictionary."""

from collections import Counter

import pytest
import torch
from fairseq.data import Dictionary

from fairseq_vqw2v.data.text_files import write_dictionary
from fairseq_vqw2v.data.unit_files import (
    UnitDictionary,
    UnitFileError,
    add_mask,
    codes_to_tokens,
    dictionary_codebook,
    load_unit_dictionary,
    read_dictionary_counts,
    read_unit_codes,
    tokens_to_codes,
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


def test_src_lines_read_back_as_codes(tmp_path):
    codes = [torch.tensor([[1, 2], [1, 2], [3, 4]]), torch.tensor([[30, 0]])]
    write_unit_lines(str(tmp_path / "train.src"), [codes_to_tokens(c) for c in codes])
    read = read_unit_codes(str(tmp_path / "train.src"))
    assert len(read) == 2 and all(torch.equal(a, b) for a, b in zip(read, codes))
    (tmp_path / "single.src").write_text("7 7 12\n")
    assert read_unit_codes(str(tmp_path / "single.src"))[0].tolist() == [[7], [7], [12]]
    (tmp_path / "empty.src").write_text("1-2\n\n")
    with pytest.raises(UnitFileError, match=r"empty\.src:2: empty line"):
        read_unit_codes(str(tmp_path / "empty.src"))
    (tmp_path / "mixed.src").write_text("1-2\n1-2-3\n")
    with pytest.raises(ValueError, match=r"mixed\.src:2: token '1-2-3' is not 2 indices"):
        read_unit_codes(str(tmp_path / "mixed.src"))


def test_codebook_of_a_dictionary(tmp_path):
    write_dictionary(str(tmp_path / "dict.txt"), Counter({"3-0": 5, "0-7": 2, "1-1": 1}))
    assert dictionary_codebook(str(tmp_path / "dict.txt")) == (8, 2)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(UnitFileError, match=r"empty\.txt: no units"):
        dictionary_codebook(str(tmp_path / "empty.txt"))


def test_unit_dictionary_file_and_mask(tmp_path):
    write_dictionary(str(tmp_path / "dict.txt"), Counter({"3-0": 5, "0-7": 2}))
    dictionary = load_unit_dictionary(str(tmp_path / "dict.txt"))
    assert add_mask(dictionary) == len(dictionary) - 1 == dictionary.nspecial + 2
    assert dictionary[len(dictionary) - 1] == "<mask>"
    with pytest.raises(FileNotFoundError, match="unit dictionary not found"):
        load_unit_dictionary(str(tmp_path / "missing.txt"))
