"""Unit files, fairseq binarized units, and the span-masked unit dataset."""

import numpy as np
import pytest
import torch

from fairseq.data import Dictionary

from fairseq_vqw2v.data.dedup import dedup, dedup_numpy, expand
from fairseq_vqw2v.data.unit_dataset import SpanMaskedUnitDataset, load_units
from fairseq_vqw2v.data.unit_files import UnitFileError, add_mask, read_unit_file
from fairseq_vqw2v.tasks.unit_mlm import UnitMlmConfig, UnitMlmTask


def _write_units(folder, split, lines, vocab):
    folder.mkdir(exist_ok=True)
    (folder / f"{split}.src").write_text("".join(" ".join(line) + "\n" for line in lines))
    (folder / "dict.txt").write_text("".join(f"{tok} {100 - i}\n" for i, tok in enumerate(vocab)))


@pytest.fixture
def units(tmp_path):
    rng = np.random.default_rng(0)
    vocab = [f"{i}-{j}" for i in range(4) for j in range(3)]
    lines = [[vocab[k] for k in rng.integers(0, len(vocab), n)] for n in (5, 40, 130, 17)]
    _write_units(tmp_path / "units", "train", lines, vocab)
    return tmp_path / "units", lines


def test_src_file_reads_tokens_in_manifest_order(units):
    folder, lines = units
    d = Dictionary.load(str(folder / "dict.txt"))
    dataset = load_units(str(folder), "train", d)
    assert len(dataset) == len(lines)
    for i, line in enumerate(lines):
        assert d.string(dataset[i]).split() == line
    np.testing.assert_array_equal(dataset.sizes, [len(line) for line in lines])


def test_unknown_units_become_unk_and_malformed_lines_name_file_and_line(tmp_path):
    _write_units(tmp_path, "train", [["0-1", "9-9"], ["0-1"]], ["0-1"])
    d = Dictionary.load(str(tmp_path / "dict.txt"))
    tokens, _ = read_unit_file(str(tmp_path / "train.src"), d)
    assert tokens.tolist() == [d.index("0-1"), d.unk(), d.index("0-1")]

    (tmp_path / "bad.src").write_text("0-1 0-1\n0-1 hello\n")
    with pytest.raises(UnitFileError, match=r"bad\.src:2: 'hello'"):
        read_unit_file(str(tmp_path / "bad.src"), d)
    (tmp_path / "empty.src").write_text("0-1\n\n")
    with pytest.raises(UnitFileError, match=r"empty\.src:2: empty line"):
        read_unit_file(str(tmp_path / "empty.src"), d)
    with pytest.raises(FileNotFoundError, match="valid"):
        load_units(str(tmp_path), "valid", d)


def test_binarized_units_equal_src_units(units, tmp_path, fairseq_cli):
    folder, lines = units
    done = fairseq_cli("preprocess", "--only-source", "--srcdict", folder / "dict.txt",
                       "--trainpref", folder / "train.src", "--destdir", tmp_path / "bin",
                       "--workers", "1", plugin=False, threads=None)
    assert done.returncode == 0, done.stderr[-3000:]
    (tmp_path / "bin" / "dict.txt").write_text((folder / "dict.txt").read_text())
    d = Dictionary.load(str(folder / "dict.txt"))
    from_src = load_units(str(folder), "train", d)
    from_bin = load_units(str(tmp_path / "bin"), "train", d)
    assert len(from_bin) == len(from_src)
    np.testing.assert_array_equal(from_bin.sizes, from_src.sizes)
    for i in range(len(from_src)):
        assert torch.equal(from_bin[i], from_src[i])


def _masked(folder, **kwargs):
    d = Dictionary.load(str(folder / "dict.txt"))
    mask_idx = add_mask(d)
    base = load_units(str(folder), "train", d)
    args = dict(tokens_per_sample=64, seed=7, mask_prob=0.05, mask_length=10)
    args.update(kwargs)
    return SpanMaskedUnitDataset(base, d, mask_idx, **args), base, d, mask_idx


def test_masked_items_are_framed_cropped_and_consistent(units):
    folder, _ = units
    dataset, base, d, mask_idx = _masked(folder)
    np.testing.assert_array_equal(dataset.sizes, np.minimum(base.sizes, 62) + 2)
    for i in range(len(dataset)):
        item = dataset[i]
        src, tgt = item["source"], item["target"]
        assert len(src) == dataset.sizes[i]
        assert src[0] == d.bos() and src[-1] == d.eos()
        assert tgt[0] == d.pad() and tgt[-1] == d.pad()
        masked = tgt.ne(d.pad())
        assert masked.any()
        assert (src[masked] == mask_idx).all()
        # the unmasked input and the targets together rebuild a window of the utterance
        window = torch.where(masked, tgt, src)[1:-1]
        full = base[i]
        starts = [s for s in range(len(full) - len(window) + 1)
                  if torch.equal(full[s:s + len(window)], window)]
        assert starts


def test_masks_depend_only_on_seed_epoch_and_index(units):
    folder, _ = units
    a, *_ = _masked(folder)
    b, *_ = _masked(folder)
    b[0], b[3]  # reading other items first must not change item 2
    assert torch.equal(a[2]["source"], b[2]["source"])
    b.set_epoch(2)
    assert not torch.equal(a[2]["source"], b[2]["source"])
    c, *_ = _masked(folder, random_crop=False, frame=False)
    assert len(c[2]["source"]) == 64
    assert torch.equal(c[2]["target"].ne(c.pad) | c[2]["source"].ne(c.mask_idx),
                       torch.ones(64, dtype=torch.bool))


def test_collater_pads_batch(units):
    folder, _ = units
    dataset, _, d, _ = _masked(folder)
    batch = dataset.collater([dataset[i] for i in range(len(dataset))])
    tokens = batch["net_input"]["src_tokens"]
    assert tokens.shape == batch["target"].shape == (4, 64)
    assert batch["net_input"]["src_lengths"].tolist() == [7, 42, 64, 19]
    assert batch["ntokens"] == 7 + 42 + 64 + 19
    assert (tokens[0, 7:] == d.pad()).all()
    order = dataset.ordered_indices()
    assert sorted(order.tolist()) == [0, 1, 2, 3]
    assert list(dataset.sizes[order]) == sorted(dataset.sizes)


@pytest.mark.parametrize("batch_size,max_tokens", [(2, None), (None, 300)])
def test_validation_batches_keep_every_utterance(tmp_path, batch_size, max_tokens):
    # fairseq drops a last batch whose size is not a multiple of --required-batch-size-multiple
    vocab = [f"{i}-{j}" for i in range(4) for j in range(3)]
    rng = np.random.default_rng(1)
    lines = [[vocab[k] for k in rng.integers(0, len(vocab), n)] for n in rng.integers(5, 60, 11)]
    _write_units(tmp_path, "valid", lines, vocab)
    task = UnitMlmTask.setup_task(UnitMlmConfig(data=str(tmp_path), seed=1))
    task.load_dataset("valid")
    itr = task.get_batch_iterator(
        task.dataset("valid"), max_tokens=max_tokens, max_sentences=batch_size,
        required_batch_size_multiple=8,
    ).next_epoch_itr(shuffle=False)
    batches = [batch["id"].tolist() for batch in itr]
    assert sorted(i for ids in batches for i in ids) == list(range(11))
    if batch_size:
        assert all(len(ids) <= batch_size for ids in batches)


def test_dedup_merges_repeats_and_expand_restores_frames():
    ids = torch.tensor([5, 5, 5, 7, 7, 5, 9])
    values, durations = dedup(ids)
    assert values.tolist() == [5, 7, 5, 9] and durations.tolist() == [3, 2, 1, 1]
    feats = torch.arange(4.0)[:, None].expand(4, 3)
    assert expand(feats, durations)[:, 0].tolist() == [0, 0, 0, 1, 1, 2, 3]
    assert dedup_numpy(ids.numpy()).tolist() == values.tolist()
    assert dedup(ids[:0])[0].numel() == 0 and len(dedup_numpy(ids.numpy()[:0])) == 0


def test_unit_mlm_masks_80_10_10_in_training_mask_only_on_valid_and_can_dedup(tmp_path):
    vocab = [f"{i}-{j}" for i in range(4) for j in range(3)]
    rng = np.random.default_rng(3)
    lines = [[vocab[k] for k in np.repeat(rng.integers(0, len(vocab), n), rng.integers(1, 5, n))]
             for n in (40, 90, 60)]
    for split in ("train", "valid"):
        _write_units(tmp_path, split, lines, vocab)
    cfg = UnitMlmConfig(data=str(tmp_path), seed=1, tokens_per_sample=512, mask_prob=0.2)
    assert (cfg.leave_unmasked_prob, cfg.random_token_prob) == (0.1, 0.1)  # masked_lm's defaults
    task = UnitMlmTask.setup_task(cfg)
    for split in ("train", "valid"):
        task.load_dataset(split)
    kept = total = 0
    for split in ("train", "valid"):
        for i in range(len(lines)):
            item = task.dataset(split)[i]
            masked = item["target"].ne(task.dictionary.pad())
            not_mask = item["source"][masked].ne(task.mask_idx)
            if split == "valid":
                assert not not_mask.any()  # valid: every target hidden, context alone
            else:
                kept, total = kept + int(not_mask.sum()), total + int(masked.sum())
    assert 0.1 < kept / total < 0.3  # about 20 % of the masked positions left or randomised

    dedup_task = UnitMlmTask.setup_task(UnitMlmConfig(data=str(tmp_path), seed=1, dedup_units=True))
    dedup_task.load_dataset("train")
    units = dedup_task.dataset("train").dataset
    for i, line in enumerate(lines):
        merged = [t for k, t in enumerate(line) if k == 0 or t != line[k - 1]]
        assert dedup_task.dictionary.string(units[i]).split() == merged


def test_unit_mlm_trains_on_the_train_subset_whatever_its_name(tmp_path):
    """``--train-subset pretrain`` (a split of more audio than train's): that split gets the
    training objective, crops and order; every other split, train included, is evaluated."""
    vocab = [f"{i}-0" for i in range(6)]
    lines = [[vocab[k % 6] for k in range(n)] for n in (40, 90, 60)]
    for split in ("pretrain", "train"):
        _write_units(tmp_path, split, lines, vocab)
    task = UnitMlmTask.setup_task(UnitMlmConfig(data=str(tmp_path), seed=1, train_subset="pretrain"))
    for split in ("pretrain", "train"):
        task.load_dataset(split)
    pretrain, train = task.dataset("pretrain"), task.dataset("train")
    assert (pretrain.leave_unmasked_prob, pretrain.random_token_prob) == (0.1, 0.1)
    assert pretrain.random_crop and pretrain.shuffle
    assert (train.leave_unmasked_prob, train.random_token_prob) == (0.0, 0.0)
    assert not train.random_crop and not train.shuffle
