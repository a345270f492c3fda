"""Featurize: audio -> vq-wav2vec units -> frozen unit_bert features (or the vq-wav2vec
aggregator output, or BERT on a quantize folder's units), on disk and on the fly."""

import dataclasses

import numpy as np
import pytest
import soundfile as sf
import torch

from fairseq_vqw2v.cli.featurize import main as featurize_main
from fairseq_vqw2v.constants import SAMPLE_RATE
from fairseq_vqw2v.data.audio_dataset import full_utterance_dataset
from fairseq_vqw2v.data.feature_files import feature_index
from fairseq_vqw2v.data.unit_files import codes_to_tokens
from fairseq_vqw2v.interop.roberta import unit_bert_checkpoint
from fairseq_vqw2v.models.unit_bert import (
    UnitBertConfig,
    UnitBertFeaturizer,
    UnitBertModel,
    load_unit_bert,
)
from fairseq_vqw2v.models.vq_wav2vec import VqWav2VecModel, arch_config

VQ_VARS = 6  # 36 possible units: all of them go in the dictionary


@pytest.fixture(scope="module")
def setup(tmp_path_factory, write_manifest, noise):
    root = tmp_path_factory.mktemp("featurize")
    audio = [noise(seconds, seed) for seed, seconds in enumerate([1.0, 0.25, 0.5625])]
    lengths = [len(a) for a in audio]
    write_manifest(root, audio, "test", "u")

    torch.manual_seed(0)
    vq_cfg = arch_config("vq_wav2vec_tiny", conv_feature_layers="[(16, 10, 5), (16, 8, 4)]",
                         vq_vars=VQ_VARS)
    vq = VqWav2VecModel(vq_cfg)
    vq_state = unit_bert_checkpoint(UnitBertConfig(), {}, str(root))  # the fairseq envelope
    vq_state["cfg"] = {"common": {"seed": 1}, "model": {**dataclasses.asdict(vq_cfg),
                       "_name": "vq_wav2vec"}, "task": {"_name": "vqw2v_pretraining",
                       "data": str(root)}, "criterion": None}
    vq_state["model"] = vq.state_dict()
    torch.save(vq_state, root / "vq.pt")

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
    featurizer = UnitBertFeaturizer(*load_unit_bert(str(root / "bert" / "bert.pt")), layer=1)
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


def test_unit_bert_loader_rejects_other_models(setup):
    root, _, _ = setup
    with pytest.raises(ValueError, match="not a unit_bert checkpoint"):
        load_unit_bert(str(root / "vq.pt"))
