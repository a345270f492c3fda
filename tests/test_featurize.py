"""Featurize: audio -> vq-wav2vec units -> frozen unit_bert features (or the vq-wav2vec
aggregator output, or BERT on a quantize folder's units), on disk and on the fly; quantize and
featurize in shards, merged into the single job's bytes."""

import contextlib
import shutil
import threading

import numpy as np
import pytest
import soundfile as sf
import torch

from _checkpoint_util import save_vq_checkpoint
from fairseq_vqw2v.cli._parallel import map_batches
from fairseq_vqw2v.cli.featurize import main as featurize_main
from fairseq_vqw2v.cli.quantize import main as quantize_main
from fairseq_vqw2v.constants import SAMPLE_RATE
from fairseq_vqw2v.data.audio_dataset import full_utterance_dataset
from fairseq_vqw2v.data.dedup import dedup, expand
from fairseq_vqw2v.data.batching import length_batches, shard_batches
from fairseq_vqw2v.data.shards import manifest_order
from fairseq_vqw2v.data.feature_files import feature_index
from fairseq_vqw2v.data.unit_files import codes_to_tokens, read_unit_codes
from fairseq_vqw2v.interop.roberta import unit_bert_checkpoint
from fairseq_vqw2v.models.unit_bert import (
    UnitBertConfig,
    UnitBertFeaturizer,
    UnitBertModel,
    load_unit_bert,
)
from fairseq_vqw2v.models.vq_wav2vec import VqWav2VecModel, arch_config
from fairseq_vqw2v.precision import bf16_available, bf16_missing

VQ_VARS = 6  # 36 possible units: all of them go in the dictionary
# bf16 keeps 8 significant bits (0.4% per rounding), through a few layers
BF16_FRAME_ERROR = 0.03


def save_vq(path, **overrides) -> VqWav2VecModel:
    """A tiny random vq_wav2vec (seed 0) saved as a fairseq checkpoint at ``path``."""
    torch.manual_seed(0)
    # 160-sample frames, as quantize requires
    vq_cfg = arch_config("vq_wav2vec_tiny", conv_feature_layers="[(16, 10, 5), (16, 8, 4), "
                         "(16, 4, 2), (16, 4, 2), (16, 4, 2)]", **overrides)
    vq = VqWav2VecModel(vq_cfg)
    save_vq_checkpoint(path, vq, path.parent)
    return vq


@pytest.fixture(scope="module")
def setup(tmp_path_factory, write_manifest, noise):
    root = tmp_path_factory.mktemp("featurize")
    audio = [noise(seconds, seed) for seed, seconds in enumerate([1.0, 0.25, 0.5625])]
    lengths = [len(a) for a in audio]
    write_manifest(root, audio, "test", "u")

    vq = save_vq(root / "vq.pt", vq_vars=VQ_VARS)

    (root / "bert").mkdir()
    tokens = [f"{a}-{b}" for a in range(VQ_VARS) for b in range(VQ_VARS)]
    (root / "bert" / "dict.txt").write_text("".join(f"{t} 1\n" for t in tokens))
    # 24 positions: the 100-frame utterance needs 5 windows of 22 units
    cfg = UnitBertConfig(encoder_layers=2, encoder_embed_dim=16, encoder_ffn_embed_dim=32,
                         encoder_attention_heads=2, max_positions=24)
    bert = UnitBertModel(cfg, len(tokens) + 5, padding_idx=1)
    torch.save(unit_bert_checkpoint(cfg, bert.state_dict(), str(root / "bert")),
               root / "bert" / "bert.pt")
    return root, vq.eval(), lengths


def test_featurize_writes_fp16_memmap_aligned_with_manifest(setup, capsys):
    root, vq, lengths = setup
    rc = featurize_main(["--vq-checkpoint", str(root / "vq.pt"), "--bert-checkpoint",
                         str(root / "bert" / "bert.pt"), "--manifest-dir", str(root),
                         "--split", "test", "--dest", str(root / "out"), "--layer", "1"])
    assert rc == 0
    assert "featurized 3 utterances" in capsys.readouterr().out
    feats, offsets = feature_index(str(root / "out"), "test")
    assert feats.dtype == np.float16 and feats.shape[1] == 16
    frames = vq.output_lengths(torch.tensor(lengths)).tolist()
    assert np.diff(offsets).tolist() == frames

    # the same as computing them on the fly, utterance by utterance (no padding effects)
    featurizer = UnitBertFeaturizer(*load_unit_bert(str(root / "bert" / "bert.pt")), layers="1")
    for i, n in enumerate(lengths):
        audio, _ = sf.read(root / f"u{i}.wav", dtype="float32")
        (expected,) = featurizer.from_audio(vq, torch.from_numpy(audio)[None])
        np.testing.assert_allclose(feats[offsets[i]:offsets[i + 1]], expected.numpy(),
                                   atol=2e-3, rtol=2e-3)


def test_featurize_without_bert_writes_the_aggregator_output(setup, capsys):
    root, vq, lengths = setup
    assert featurize_main(["--vq-checkpoint", str(root / "vq.pt"), "--manifest-dir", str(root),
                           "--split", "test", "--dest", str(root / "c")]) == 0
    assert "vq-wav2vec aggregator output c" in capsys.readouterr().out
    feats, offsets = feature_index(str(root / "c"), "test")
    for i in range(len(lengths)):
        audio, _ = sf.read(root / f"u{i}.wav", dtype="float32")
        with torch.no_grad():
            expected = vq.extract_features(torch.from_numpy(audio)[None])["c"][0].T
        assert offsets[i + 1] - offsets[i] == len(expected)
        # fp16 storage: half a unit in the last place of float16 (11 significant bits)
        np.testing.assert_allclose(feats[offsets[i]:offsets[i + 1]].astype(np.float32), expected.numpy(),
                                   rtol=2 ** -11, atol=1e-4)


def test_featurize_splits_in_one_run_equal_one_run_per_split(setup, tmp_path, capsys):
    """``--splits`` (quantize's name) loads the model once for every split; ``--split`` is the
    older spelling of the same option."""
    root, _, _ = setup
    data = tmp_path / "data"
    shutil.copytree(root, data, ignore=shutil.ignore_patterns("*.pt", "bert", "out", "c*", "from_*"))
    shutil.copy(data / "test.tsv", data / "valid.tsv")
    common = ["--vq-checkpoint", str(root / "vq.pt"), "--manifest-dir", str(data)]
    assert featurize_main([*common, "--splits", "test,valid", "--dest", str(tmp_path / "both")]) == 0
    assert capsys.readouterr().out.count("featurized 3 utterances") == 2
    assert featurize_main([*common, "--split", "valid", "--dest", str(tmp_path / "one")]) == 0
    for split in ("test", "valid"):
        assert ((tmp_path / "both" / f"{split}.feats.npy").read_bytes()
                == (tmp_path / "one" / "valid.feats.npy").read_bytes())
        assert ((tmp_path / "both" / f"{split}.lengths").read_text()
                == (tmp_path / "one" / "valid.lengths").read_text())


def test_featurize_from_a_units_folder_equals_featurize_from_audio(setup, capsys):
    root, vq, lengths = setup
    units = root / "units"
    units.mkdir()
    # the codes of one padded batch of all three, as featurize computes them from the audio
    dataset = full_utterance_dataset(str(root), "test", {"sample_rate": SAMPLE_RATE, "normalize": False})
    net_input = dataset.collater([dataset[i] for i in range(len(dataset))])["net_input"]
    codes = vq.encode(net_input["source"], net_input["padding_mask"])
    (units / "test.src").write_text("".join(" ".join(codes_to_tokens(c)) + "\n" for c in codes))
    bert = str(root / "bert" / "bert.pt")
    common = ["--manifest-dir", str(root), "--split", "test", "--bert-checkpoint", bert]
    assert featurize_main(["--units-dir", str(units), "--dest", str(root / "from_units"), *common]) == 0
    assert featurize_main(["--vq-checkpoint", str(root / "vq.pt"), "--dest", str(root / "from_audio"),
                           *common]) == 0
    a, offsets_a = feature_index(str(root / "from_units"), "test")
    b, offsets_b = feature_index(str(root / "from_audio"), "test")
    assert offsets_a.tolist() == offsets_b.tolist()
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(SystemExit):  # units without a BERT to read them
        featurize_main(["--units-dir", str(units), "--manifest-dir", str(root), "--split", "test",
                        "--dest", str(root / "x")])


def test_long_utterances_are_encoded_in_framed_windows(setup):
    root, vq, _ = setup
    model, dictionary = load_unit_bert(str(root / "bert" / "bert.pt"))
    featurizer = UnitBertFeaturizer(model, dictionary)
    codes = torch.randint(0, VQ_VARS, (50, 2))
    ids = featurizer.token_ids(codes)
    assert [dictionary[i] for i in ids] == codes_to_tokens(codes)
    (out,) = featurizer([ids])
    assert out.shape == (50, 16)
    # window 2 = units 22..43, framed with <s> </s>
    window = torch.cat([torch.tensor([dictionary.bos()]), ids[22:44], torch.tensor([dictionary.eos()])])
    with torch.no_grad():
        expected = model.extract_features(window[None])[0, 1:-1]
    torch.testing.assert_close(out[22:44], expected)


@pytest.fixture(scope="module")
def dedup_bert(setup):
    """The test BERT saved as ``unit_mlm --dedup-units`` records it (its task config)."""
    root = setup[0]
    model, _ = load_unit_bert(str(root / "bert" / "bert.pt"))
    checkpoint = unit_bert_checkpoint(model.cfg, model.state_dict(), str(root / "bert"))
    checkpoint["cfg"]["task"]["dedup_units"] = True
    path = root / "bert" / "bert_dedup.pt"
    torch.save(checkpoint, path)
    return str(path)


def repeats_and_changes(ids):
    """(frames equal to the one before, frames that differ from it) of T ids."""
    same = (ids[1:] == ids[:-1]).nonzero().flatten() + 1
    changed = (ids[1:] != ids[:-1]).nonzero().flatten() + 1
    return same, changed


@pytest.mark.parametrize("layers", ["last", "all"])
def test_a_bert_trained_on_deduplicated_units_reads_them_so(setup, dedup_bert, layers):
    """One feature vector per unit frame, the same over each run of equal units: BERT's output
    for the de-duplicated sequence (60 frames in 24 runs: two windows of 22), expanded by the
    durations; the unknown-unit counter counts frames."""
    root = setup[0]
    featurizer = UnitBertFeaturizer.from_checkpoint(dedup_bert, layers)
    plain = UnitBertFeaturizer.from_checkpoint(str(root / "bert" / "bert.pt"), layers)
    assert featurizer.dedup_units and not plain.dedup_units
    i = torch.arange(24)
    runs = torch.stack([i % VQ_VARS, (i * 5 // VQ_VARS) % VQ_VARS], dim=1)  # neighbours differ
    codes = runs.repeat_interleave(torch.tensor([1, 2, 3, 4] * 6), dim=0)
    ids = featurizer.token_ids(codes)
    assert featurizer.units_seen == len(ids) == 60
    (out,) = featurizer([ids])
    assert out.shape == (60, *featurizer.frame_shape)
    same, changed = repeats_and_changes(ids)
    assert torch.equal(out[same], out[same - 1])
    assert not torch.isclose(out[changed], out[changed - 1]).all(dim=-1).any()
    units, durations = dedup(ids)
    assert len(units) == 24
    torch.testing.assert_close(out, expand(plain([units])[0], durations))
    # without the flag, every frame is a token with its own position
    (frames,) = plain([ids])
    assert not torch.equal(frames[same], frames[same - 1])


def test_featurize_expands_a_dedup_berts_features_to_every_unit_frame(setup, units, dedup_bert,
                                                                      tmp_path):
    root = setup[0]
    assert featurize_main(["--units-dir", str(units), "--bert-checkpoint", dedup_bert,
                           "--manifest-dir", str(root), "--split", "test",
                           "--dest", str(tmp_path)]) == 0
    feats, offsets = feature_index(str(tmp_path), "test")
    codes = read_unit_codes(str(units / "test.src"))
    assert np.diff(offsets).tolist() == [len(c) for c in codes]
    repeated = 0
    for i, c in enumerate(codes):
        same, _ = repeats_and_changes(c[:, 0] * VQ_VARS + c[:, 1])
        rows = np.asarray(feats[offsets[i]:offsets[i + 1]])
        np.testing.assert_array_equal(rows[same.numpy()], rows[same.numpy() - 1])
        repeated += len(same)
    assert repeated > 0


def test_unit_bert_loader_rejects_other_models(setup):
    root, _, _ = setup
    with pytest.raises(ValueError, match="not a unit_bert checkpoint"):
        load_unit_bert(str(root / "vq.pt"))


# 1.2 s batches of the audio (1 s, 0.25 s, 0.5625 s) are [1 s], [0.5625 s, 0.25 s]: of three
# shards, one gets no batch
BATCH = ["--batch-size-seconds", "1.2"]
NUM_SHARDS = ["--num-shards", "3"]


def test_shards_take_runs_of_the_single_jobs_batches():
    sizes = [5, 9, 1, 7, 3, 8, 2]
    batches = length_batches(sizes, range(len(sizes)), 16)
    for num_shards in (1, 2, 3, 10):
        shards = [shard_batches(batches, s, num_shards) for s in range(num_shards)]
        assert [batch for run, _ in shards for batch in run] == batches
        for run, indices in shards:
            assert indices == sorted(i for batch in run for i in batch)


def run_shards(main, args, dest, shards=range(3)):
    for shard in shards:
        assert main([*args, "--dest", str(dest), "--shard", str(shard), *NUM_SHARDS, *BATCH]) == 0


def file_bytes(folder, names):
    return {name: (folder / name).read_bytes() for name in names}


@pytest.fixture(scope="module")
def units(setup):
    """The test split quantized by a single job."""
    root = setup[0]
    assert quantize_main(["--checkpoint", str(root / "vq.pt"), "--manifest-dir", str(root),
                          "--splits", "test", "--dest", str(root / "units_single"), *BATCH]) == 0
    return root / "units_single"


def test_quantize_shards_merge_into_the_single_jobs_bytes(setup, units, tmp_path):
    root = setup[0]
    args = ["--checkpoint", str(root / "vq.pt"), "--manifest-dir", str(root), "--splits", "test"]
    run_shards(quantize_main, args, tmp_path)
    assert quantize_main(["--merge", "--dest", str(tmp_path), "--splits", "test", *NUM_SHARDS]) == 0
    names = ["test.src", "dict.txt"]
    assert file_bytes(tmp_path, names) == file_bytes(units, names)
    assert not list(tmp_path.glob("*shard*"))


@contextlib.contextmanager
def torch_threads(n):
    """torch's thread count set to ``n`` for the block, then restored."""
    threads = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def test_map_batches_runs_cpu_batches_side_by_side_in_order():
    """On CPU with two torch threads: two batches at once (both must reach the barrier), each
    with one-thread ops, results in the batches' order, a batch's error raised to the caller,
    and the thread count restored."""
    with torch_threads(2):
        both_running = threading.Barrier(2, timeout=30)
        ops_threads = []

        def square(x):
            ops_threads.append(torch.get_num_threads())
            if x < 2:
                both_running.wait()
            return x * x

        assert list(map_batches(square, range(20), "cpu")) == [x * x for x in range(20)]
        assert set(ops_threads) == {1}
        assert torch.get_num_threads() == 2

        def bad_file(x):
            if x == 7:
                raise ValueError("u7.wav: cannot read audio")
            return x

        with pytest.raises(ValueError, match="u7.wav"):
            list(map_batches(bad_file, range(20), "cpu"))
        assert torch.get_num_threads() == 2


def test_quantize_writes_the_same_units_on_one_thread(setup, units, tmp_path):
    """Batches side by side (the default on several cores) or one after the other on one
    thread: the same bytes."""
    root = setup[0]
    with torch_threads(1):
        assert quantize_main(["--checkpoint", str(root / "vq.pt"), "--manifest-dir", str(root),
                              "--splits", "test", "--dest", str(tmp_path), *BATCH]) == 0
    names = ["test.src", "dict.txt"]
    assert file_bytes(tmp_path, names) == file_bytes(units, names)


@pytest.mark.parametrize("source", ["bert_from_audio", "bert_from_units", "c", "bert_layers"])
def test_featurize_shards_merge_into_the_single_jobs_bytes(setup, units, source, tmp_path):
    root = setup[0]
    bert = ["--bert-checkpoint", str(root / "bert" / "bert.pt")]
    args = {
        "bert_from_audio": ["--vq-checkpoint", str(root / "vq.pt"), *bert],
        "bert_from_units": ["--units-dir", str(units), *bert],
        "c": ["--vq-checkpoint", str(root / "vq.pt")],
        "bert_layers": ["--units-dir", str(units), *bert, "--layers", "2,0"],
    }[source] + ["--manifest-dir", str(root), "--split", "test"]
    assert featurize_main([*args, "--dest", str(tmp_path / "single"), *BATCH]) == 0
    run_shards(featurize_main, args, tmp_path / "sharded")
    assert featurize_main(["--merge", "--split", "test", "--dest", str(tmp_path / "sharded"),
                           *NUM_SHARDS]) == 0
    names = ["test.feats.npy", "test.lengths"] + (["test.layers"] if source == "bert_layers" else [])
    assert file_bytes(tmp_path / "sharded", names) == file_bytes(tmp_path / "single", names)
    assert sorted(p.name for p in (tmp_path / "sharded").iterdir()) == sorted(names)
    if source == "bert_layers":  # K x C frames, the layers in the order asked for
        assert feature_index(str(tmp_path / "single"), "test")[0].shape[1:] == (2, 16)
        assert (tmp_path / "single" / "test.layers").read_text() == "2 0\n"


def test_layer_lists_are_checked():
    from fairseq_vqw2v.models.unit_bert import bert_layer_indices

    assert bert_layer_indices("last", 12) == [12]
    assert bert_layer_indices("all", 2) == [0, 1, 2]
    assert bert_layer_indices("3,0", 12) == [3, 0]
    for bad in ("13", "1,1", "-1", "first"):
        with pytest.raises(ValueError, match=f"BERT layers '{bad}'"):
            bert_layer_indices(bad, 12)


def test_merge_names_a_missing_shard_and_a_rerun_reproduces_it(setup, tmp_path, capsys):
    root = setup[0]
    args = ["--vq-checkpoint", str(root / "vq.pt"), "--manifest-dir", str(root), "--split", "test"]
    run_shards(featurize_main, args, tmp_path)
    part = tmp_path / "test.shard1of3"
    written = file_bytes(part, ["test.feats.npy", "test.lengths", "indices"])
    shutil.rmtree(part)
    (tmp_path / "test.shard1of3.tmp").mkdir()  # what a killed run leaves
    merge = ["--merge", "--split", "test", "--dest", str(tmp_path), *NUM_SHARDS]
    assert featurize_main(merge) == 1
    assert "missing shard(s) 1 of 3 (no test.shard1of3 in" in capsys.readouterr().err
    assert not (tmp_path / "test.feats.npy").exists()

    run_shards(featurize_main, args, tmp_path, shards=[1])
    assert file_bytes(part, written) == written
    assert not (tmp_path / "test.shard1of3.tmp").exists()
    assert featurize_main(merge) == 0


def test_merge_finds_every_missing_manifest_line_the_last_included(tmp_path):
    """A part from a run on another manifest (here one line shorter) or a lost index is caught,
    not merged into a shorter file."""

    def parts(indices, utterances):
        folders = []
        for p, (held, size) in enumerate(zip(indices, utterances)):
            folder = tmp_path / f"test.shard{p}of2"
            folder.mkdir(exist_ok=True)
            (folder / "indices").write_text("".join(f"{i}\n" for i in held))
            (folder / "utterances").write_text(f"{size}\n")
            folders.append(str(folder))
        return folders

    assert manifest_order(parts([[2, 3], [0, 1]], [4, 4])) == [(1, 0), (1, 1), (0, 0), (0, 1)]
    with pytest.raises(ValueError, match="holds manifest line 3: were the shards run on the same"):
        manifest_order(parts([[2], [0, 1]], [4, 4]))
    with pytest.raises(ValueError, match=r"disagree on the split's size \(4, 3 utterances"):
        manifest_order(parts([[2], [0, 1]], [4, 3]))
    with pytest.raises(ValueError, match="indices:2: manifest line 4 is not one of the split's 4"):
        manifest_order(parts([[2, 4], [0, 1, 3]], [4, 4]))
    (tmp_path / "test.shard0of2" / "utterances").unlink()
    with pytest.raises(ValueError, match="shard0of2/utterances: unreadable"):
        manifest_order([str(tmp_path / "test.shard0of2")])


@pytest.mark.skipif(not bf16_available("cpu"), reason=f"no bf16 autocast: {bf16_missing('cpu')}")
@pytest.mark.parametrize("source", ["bert", "c"])
def test_bf16_featurize_is_close_to_fp32(setup, units, source, tmp_path):
    """Under bf16 autocast, each frame within BF16_FRAME_ERROR of the fp32 one (relative L2
    error): BERT features of the same units, and ``c`` of a continuous vq-wav2vec (a quantizer's
    codes can flip near ties; quantize's test bounds how often, in a trained model)."""
    root, _, _ = setup
    if source == "bert":
        inputs = ["--units-dir", str(units), "--bert-checkpoint", str(root / "bert" / "bert.pt")]
    else:
        save_vq(tmp_path / "continuous.pt", vq_type="none")
        inputs = ["--vq-checkpoint", str(tmp_path / "continuous.pt")]
    feats = []
    for flags in ([], ["--bf16"]):
        dest = tmp_path / ("bf16" if flags else "fp32")
        assert featurize_main([*inputs, "--manifest-dir", str(root), "--split", "test",
                               "--dest", str(dest), *flags]) == 0
        feats.append(np.asarray(feature_index(str(dest), "test")[0], dtype=np.float32))
    fp32, bf16 = feats
    error = np.linalg.norm(bf16 - fp32, axis=1) / np.linalg.norm(fp32, axis=1)
    print(f"{source}: relative error of bf16 frames: mean {error.mean():.4f}, max {error.max():.4f}")
    assert 0 < error.max() <= BF16_FRAME_ERROR


def test_quantize_names_the_checkpoint_as_featurize_does_and_keeps_the_old_spelling():
    from fairseq_vqw2v.cli.quantize import parse_args

    common = ["--manifest-dir", "data", "--dest", "units"]
    assert parse_args(["--vq-checkpoint", "vq.pt", *common]).checkpoint == "vq.pt"
    assert parse_args(["--checkpoint", "vq.pt", *common]).checkpoint == "vq.pt"
    with pytest.raises(SystemExit):
        parse_args(common)
