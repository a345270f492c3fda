"""Featurize: audio -> vq-wav2vec units -> frozen unit_bert features, on disk and on the fly."""

import dataclasses

import numpy as np
import pytest
import soundfile as sf
import torch

from fairseq_vqw2v.cli.featurize import main as featurize_main
from fairseq_vqw2v.features import UnitBertFeaturizer, feature_index, load_unit_bert
from fairseq_vqw2v.interop.roberta import unit_bert_checkpoint
from fairseq_vqw2v.models.unit_bert import UnitBertConfig, UnitBertModel
from fairseq_vqw2v.models.vq_wav2vec import VqWav2VecModel, arch_config
from fairseq_vqw2v.units import codes_to_tokens

VQ_VARS = 6  # 36 possible units: all of them go in the dictionary


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("featurize")
    rng = np.random.default_rng(0)
    lengths = [16000, 4000, 9000]
    rows = []
    for i, n in enumerate(lengths):
        sf.write(root / f"u{i}.wav", (0.1 * rng.standard_normal(n)).astype(np.float32), 16000)
        rows.append(f"u{i}.wav\t{n}")
    (root / "test.tsv").write_text(f"{root}\n" + "\n".join(rows) + "\n")

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
