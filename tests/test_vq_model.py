"""vq_wav2vec model: archs, shapes, padding, quantizers, temperature schedules, fairseq format."""

import math

import pytest
import torch
from fairseq.models.wav2vec.wav2vec import Wav2VecConfig, Wav2VecModel

import fairseq_vqw2v  # noqa: F401  registers vq_wav2vec
from fairseq_vqw2v.interop.wav2vec import convert_state_dict
from fairseq_vqw2v.modules.conv_encoder import activate_, in_storage_order
from fairseq_vqw2v.modules.masked_group_norm import MaskedGroupNorm
from fairseq_vqw2v.models.vq_wav2vec import VqWav2VecConfig, VqWav2VecModel, arch_config, codebook_shape

SMALL = dict(
    conv_feature_layers="[(32, 10, 5), (32, 8, 4), (32, 4, 2), (32, 4, 2), (32, 4, 2)]",
    conv_aggregator_layers="[(32, 2, 1), (48, 3, 1)]",
    prediction_steps=3,
    num_negatives=4,
    vq_vars=8,
)


def _model(**overrides):
    torch.manual_seed(0)
    return VqWav2VecModel(VqWav2VecConfig(**{"infonce": False, "max_update": 100, **SMALL, **overrides}))


def _count(arch):
    with torch.device("meta"):
        model = VqWav2VecModel(arch_config(arch))
    return sum(p.numel() for p in model.parameters()) / 1e6


@pytest.mark.parametrize("arch,millions", [("vq_wav2vec_gumbel", 34.1), ("vq_wav2vec_kmeans", 33.0)])
def test_param_counts_match_released_checkpoints(arch, millions):
    assert _count(arch) == pytest.approx(millions, abs=0.1)


def test_small_and_tiny_archs():
    assert _count("vq_wav2vec_tiny") < 2 < _count("vq_wav2vec_small") < 20
    tiny = arch_config("vq_wav2vec_tiny", vq_vars=100)
    assert tiny.vq_vars == 100 and tiny.vq_type == "gumbel" and tiny.combine_groups
    assert arch_config("vq_wav2vec_kmeans").vq_type == "kmeans"
    with pytest.raises(ValueError, match="unknown vq_wav2vec arch"):
        arch_config("wav2vec")


@pytest.mark.parametrize("vq_type", ["gumbel", "kmeans", "none"])
def test_shapes_and_output_lengths(vq_type):
    model = _model(vq_type=vq_type).eval()
    source = torch.randn(2, 4000)
    frames = int(model.output_lengths(torch.tensor([4000]))[0])
    assert frames == 23  # 4000 -> 799 -> 198 -> 98 -> 48 -> 23 through the 5 strided convs
    feats = model.extract_features(source)
    assert feats["z"].shape == (2, 32, frames) and feats["c"].shape == (2, 48, frames)
    assert feats["q"].shape == (2, 32, frames)
    if vq_type == "none":
        assert "idx" not in feats and torch.equal(feats["q"], feats["z"])
    else:
        assert feats["idx"].shape == (2, frames, 2) and feats["idx"].dtype == torch.long
        assert int(feats["idx"].max()) < 8
    out = model(source)
    keys = {"gumbel": {"num_vars", "code_perplexity", "prob_perplexity", "temp", "codes",
                       "code_counts", "soft_code_counts"},
            "kmeans": {"num_vars", "code_perplexity", "kmeans_loss", "codes", "code_counts"},
            "none": set()}[vq_type]
    assert set(out) == keys | {"cpc_logits", "cpc_targets"}
    if vq_type != "none":
        assert torch.equal(out["codes"], feats["idx"])


@pytest.mark.parametrize("vq_type", ["gumbel", "kmeans"])
def test_encode_gives_each_utterance_its_codes_without_padding(vq_type):
    model = _model(vq_type=vq_type).eval()
    short, long = torch.randn(2500), torch.randn(4000)
    batch = torch.stack([torch.cat([short, torch.zeros(1500)]), long])
    mask = torch.zeros(2, 4000, dtype=torch.bool)
    mask[0, 2500:] = True
    codes = model.encode(batch, mask)
    for c, audio in zip(codes, (short, long)):
        assert torch.equal(c, model.extract_features(audio[None])["idx"][0])
    assert [len(c) for c in model.encode(long[None])] == model.output_lengths(torch.tensor([4000])).tolist()
    with pytest.raises(ValueError, match="vq_type none"):
        _model(vq_type="none").encode(batch, mask)


def test_codebook_shape_needs_a_quantizing_vq_wav2vec_model():
    tiny = "[(16, 10, 5), (16, 8, 4)]"
    model = VqWav2VecModel(arch_config("vq_wav2vec_tiny", conv_feature_layers=tiny, vq_vars=40))
    assert codebook_shape(model) == (40, 2)
    with pytest.raises(ValueError, match="vq_type none"):
        codebook_shape(VqWav2VecModel(arch_config("vq_wav2vec_tiny", vq_type="none")))
    reference = Wav2VecModel(Wav2VecConfig(conv_feature_layers=tiny, infonce=False))
    with pytest.raises(ValueError, match="cli.convert"):
        codebook_shape(reference)


@pytest.mark.parametrize("infonce", [False, True])
def test_output_format_and_loss_match_fairseq_wav2vec(infonce):
    """Same weights, same seed: identical cpc_logits / cpc_targets and perplexities as fairseq."""
    kw = dict(SMALL, vq_type="gumbel", vq_depth=2, balanced_classes=not infonce, infonce=infonce)
    ref = Wav2VecModel(Wav2VecConfig(**kw)).train()
    ours = VqWav2VecModel(VqWav2VecConfig(max_update=0, **kw)).train()
    ours.load_state_dict(convert_state_dict(ref.state_dict()))
    source = torch.randn(3, 6000)
    torch.manual_seed(7)
    a = ref(source)
    torch.manual_seed(7)
    b = ours(source)
    assert a["cpc_logits"].shape == b["cpc_logits"].shape
    assert (a["cpc_logits"] - b["cpc_logits"]).abs().max() < 1e-5
    ta, tb = a["cpc_targets"], b["cpc_targets"]
    assert type(ta) is type(tb)
    if isinstance(ta, tuple):
        assert torch.equal(ta[1], tb[1])
        ta, tb = ta[0], tb[0]
    assert torch.equal(ta, tb)
    for key in ("code_perplexity", "prob_perplexity"):
        assert b[key].item() == pytest.approx(a[key].item(), rel=1e-5)
    # (G V - prob_perplexity) / G V: the perplexity's relative tolerance is this absolute one
    # (the difference of two near-equal numbers has no relative precision to speak of)
    assert ours.get_extra_losses(b).item() == pytest.approx(ref.get_extra_losses(a).item(), abs=1e-5)


@pytest.mark.parametrize("vq_type", ["gumbel", "kmeans"])
def test_padding_does_not_change_an_utterance(vq_type):
    model = _model(vq_type=vq_type).eval()
    short, long = torch.randn(2500), torch.randn(4000)
    batch = torch.zeros(2, 4000)
    batch[0, :2500], batch[1] = short, long
    mask = torch.zeros(2, 4000, dtype=torch.bool)
    mask[0, 2500:] = True
    alone = model.extract_features(short.unsqueeze(0))
    batched = model.extract_features(batch, padding_mask=mask)
    n = alone["z"].size(-1)
    assert batched["padding_mask"][0].sum() == batched["z"].size(-1) - n
    assert not batched["padding_mask"][0, :n].any()
    for key in ("z", "q", "c"):
        assert (batched[key][0, :, :n] - alone[key][0]).abs().max() < 1e-5, key
    assert torch.equal(batched["idx"][0, :n], alone["idx"][0])


@pytest.mark.parametrize("padded", [False, True])
def test_encoder_inference_layout_computes_the_training_layout(padded):
    """Without autograd the encoder runs time-major (windows x kernels, channels-last convs):
    the same features as the channels-first convolutions that training differentiates."""
    encoder = _model(vq_type="gumbel").feature_extractor
    source = torch.randn(3, 5000)
    lengths = torch.tensor([5000, 3100, 4000]) if padded else None
    trained, train_lengths = encoder(source, lengths)
    with torch.no_grad():
        inferred, infer_lengths = encoder(source, lengths)
    assert not inferred.is_contiguous()  # time-major: the other path really ran
    assert (train_lengths is None) == (not padded)
    frames = trained.size(-1) if train_lengths is None else train_lengths
    for b, n in enumerate(torch.as_tensor(frames).expand(3).tolist()):
        assert (inferred[b, :, :n] - trained[b, :, :n]).abs().max() < 1e-5


@pytest.mark.parametrize("activation", [torch.nn.GELU(), torch.nn.ReLU()])
@pytest.mark.parametrize("view", ["time-major", "strided"])
def test_in_place_activation_of_a_view_is_the_activation(activation, view):
    """activate_ runs the in-place kernel on the view's memory in storage order (a time-major
    view as B x T x C) and falls back to the view itself where the memory has gaps; either way
    the view holds the activation of what it held (to the last bits for GELU: torch's GELU kernels
    on contiguous and strided memory round differently)."""
    memory = torch.randn(3, 40, 16)
    x = memory.transpose(1, 2) if view == "time-major" else memory.transpose(1, 2)[:, :, ::2]
    expected = activation(x.clone())
    assert activate_(x, activation) is x
    torch.testing.assert_close(x, expected, rtol=1e-6, atol=1e-6)
    assert in_storage_order(x).is_contiguous() == (view == "time-major")


def test_group_norm_scale_shift_is_the_norm_on_valid_frames():
    """Inference normalises in place with per-utterance (scale, shift) from two moments: the
    norm's own output on each utterance's valid frames, affine parameters and an offset too."""
    torch.manual_seed(0)
    norm = MaskedGroupNorm(1, 16)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    x = torch.randn(3, 40, 16).transpose(1, 2) * 3 + 2  # time-major, as inference has it
    lengths = torch.tensor([40, 25, 31])
    scale, shift = norm.scale_shift(x, lengths)
    expected = norm(x, lengths)
    for b, n in enumerate(lengths.tolist()):
        assert (x[b, :, :n] * scale[b] + shift[b] - expected[b, :, :n]).abs().max() < 1e-5
    with pytest.raises(ValueError, match="one group"):
        MaskedGroupNorm(2, 16).scale_shift(x)


def test_padded_predictions_get_zero_weight_and_valid_negatives():
    model = _model(vq_type="gumbel", num_negatives=3).train()
    source = torch.randn(2, 4000)
    mask = torch.zeros(2, 4000, dtype=torch.bool)
    mask[0, 2000:] = True
    out = model(source, padding_mask=mask)
    labels, weights = out["cpc_targets"]
    assert labels.shape == weights.shape == out["cpc_logits"].shape
    frames = model.output_lengths(torch.tensor([2000, 4000]))
    tsz = int(frames[1])
    offset, copies = model.wav2vec_predictions.offset, 4
    expected_valid = sum(copies * (max(int(f) - offset - i, 0)) for f in frames for i in range(3))
    assert int(weights.sum()) == expected_valid
    idx = model.wav2vec_predictions.sample_negatives(2, tsz, frames)
    assert idx.shape == (2, tsz, 3)
    assert idx[0].max() < frames[0] and idx[1].min() >= tsz  # own utterance, valid frames only
    loss = torch.nn.functional.binary_cross_entropy_with_logits(out["cpc_logits"], labels, weights)
    loss.backward()
    assert math.isfinite(loss.item())


def test_infonce_padding_uses_ignore_index():
    model = _model(vq_type="none", infonce=True)
    mask = torch.zeros(2, 4000, dtype=torch.bool)
    mask[1, 3000:] = True
    out = model(torch.randn(2, 4000), padding_mask=mask)
    assert out["cpc_logits"].size(1) == 5
    labels = out["cpc_targets"]
    assert set(labels.unique().tolist()) == {-100, 0}


def test_temperature_schedules():
    exp = _model(vq_type="gumbel", vq_temp=(2.0, 0.5, 0.99)).vector_quantizer
    lin = _model(vq_type="gumbel", temp_schedule="linear", max_update=1000).vector_quantizer
    for update, expected in [(0, 2.0), (10, 2.0 * 0.99**10), (1000, 0.5)]:
        exp.set_num_updates(update)
        assert exp.curr_temp == pytest.approx(expected)
    for update, expected in [(0, 2.0), (350, 1.25), (700, 0.5), (900, 0.5)]:
        lin.set_num_updates(update)
        assert lin.curr_temp == pytest.approx(expected)
    model = _model(vq_type="gumbel", temp_schedule="linear", max_update=1000)
    model.set_num_updates(350)  # fairseq's trainer path
    assert model(torch.randn(1, 3000))["temp"] == pytest.approx(1.25)
    with pytest.raises(ValueError, match="max_update"):
        _model(vq_type="gumbel", temp_schedule="linear", max_update=0)


@pytest.mark.parametrize("vq_type", ["gumbel", "kmeans"])
def test_combine_groups_shares_one_codebook(vq_type):
    shared = _model(vq_type=vq_type, combine_groups=True).vector_quantizer
    separate = _model(vq_type=vq_type, combine_groups=False).vector_quantizer
    book = shared.vars if vq_type == "gumbel" else shared.embedding
    assert book.numel() * 2 == (separate.vars if vq_type == "gumbel" else separate.embedding).numel()
    # the same code index in either group selects the same vector
    model = _model(vq_type=vq_type, combine_groups=True).eval()
    feats = model.extract_features(torch.randn(2, 4000))
    q = feats["q"].transpose(1, 2).reshape(-1, 2, 16)
    idx = feats["idx"].reshape(-1, 2)
    rows = {}
    for g in range(2):
        for code, vec in zip(idx[:, g].tolist(), q[:, g]):
            rows.setdefault(code, vec)
            assert torch.allclose(rows[code], vec)


def test_kmeans_loss_and_straight_through_gradient():
    model = _model(vq_type="kmeans", vq_gamma=0.5).train()
    out = model(torch.randn(2, 4000))
    assert out["kmeans_loss"] > 0 and out["num_vars"] == 2 * 8  # G x V, as the Gumbel one
    out["kmeans_loss"].backward()
    assert model.vector_quantizer.embedding.grad.abs().sum() > 0
    model.zero_grad()
    out = model(torch.randn(2, 4000))
    torch.nn.functional.binary_cross_entropy_with_logits(out["cpc_logits"], out["cpc_targets"]).backward()
    assert model.feature_extractor.conv_layers[0].conv.weight.grad.abs().sum() > 0


def test_bad_layer_spec_is_a_clear_error():
    with pytest.raises(ValueError, match="conv_feature_layers"):
        _model(conv_feature_layers="[(32, 10)")
    model = _model().eval()
    with pytest.raises(ValueError, match="too few"):
        model(torch.randn(1, 600))
    with pytest.raises(ValueError, match="B x T"):
        model.extract_features(torch.randn(4000))
    with pytest.raises(ValueError, match="padding_mask shape"):
        model(torch.randn(2, 4000), padding_mask=torch.zeros(2, 3000, dtype=torch.bool))


def _train_codes_agreement(**overrides):
    """Share of frames whose Gumbel-sampled training code equals the eval-mode argmax code."""
    torch.manual_seed(0)
    model = VqWav2VecModel(arch_config("vq_wav2vec_tiny", **overrides))
    source = torch.randn(2, 16000)
    with torch.no_grad():
        model.eval()
        argmax = model.extract_features(source)["idx"]
        model.train()
        sampled = model(source)["codes"]
    return (sampled == argmax).float().mean().item()


def test_tiny_arch_gumbel_codes_depend_on_the_input_from_the_start():
    # with the depth-2 projection's default init the logits are far below the Gumbel noise, so the
    # codes sampled in training are random and a short CPU run cannot learn (the demo's failure)
    depth2 = _train_codes_agreement(vq_depth=2)
    tiny = _train_codes_agreement()
    assert depth2 < 0.1
    assert tiny > 3 * depth2 and tiny > 0.2
