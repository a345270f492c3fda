"""W2lConvStack: presets, activations, length arithmetic, padding invariance, safe layer parsing."""

import math

import pytest
import torch
import torch.nn.functional as F

from fairseq_vqw2v.modules.w2l_conv import (
    W2L_TIMIT_LAYERS,
    W2L_TINY_LAYERS,
    W2L_WSJ_LAYERS,
    W2lConvStack,
    parse_layers,
)


def num_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("preset, activation, out_channels, frames", [
    (W2L_WSJ_LAYERS, "glu", 500, [50, 37]),
    (W2L_TIMIT_LAYERS, "prelu", 1000, [50, 37]),
    (W2L_TINY_LAYERS, "relu", 256, [25, 19]),
])
def test_preset_shapes_and_lengths(preset, activation, out_channels, frames):
    torch.manual_seed(0)
    stack = W2lConvStack(80, preset, activation=activation).eval()
    lengths = torch.tensor([50, 37])
    out, out_lengths = stack(torch.randn(2, 50, 80), lengths)
    assert out.shape == (2, frames[0], out_channels)
    assert stack.out_channels == out_channels
    assert out_lengths.tolist() == frames
    assert stack.output_lengths(lengths).tolist() == frames


def test_preset_contents():
    wsj = parse_layers(W2L_WSJ_LAYERS)
    assert [k for _, k, _, _ in wsj] == [13, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 21, 1]
    assert all(s == 1 and d == 0.25 for _, _, s, d in wsj)
    assert parse_layers(W2L_TIMIT_LAYERS) == [(1000, 5, 1, 0.7)] * 7
    assert len(parse_layers(W2L_TINY_LAYERS)) == 4


def test_parameter_counts():
    # hand computation, input dim 80; a conv has in * out * kernel weights + out biases, out doubled
    # for GLU; weight norm adds one gain per conv output channel; PReLU adds one slope per layer.
    # WSJ (conv out channels before GLU, kernel): (200,13) from 80 in, then in = out / 2 of the
    # previous layer: 80*200*13 + 100*200*3 + 100*200*4 + 100*250*5 + 125*250*6 + 125*300*7
    # + 150*350*8 + 175*400*9 + 200*450*10 + 225*500*11 + 250*500*12 + 250*500*13 + 250*600*14
    # + 300*600*15 + 300*750*21 + 375*1000*1 = 17,135,500 weights; biases and gains 7,050 each.
    wsj_plain, wsj_wn = 17_135_500 + 7_050, 17_135_500 + 2 * 7_050
    # TIMIT: 80*1000*5 + 6*1000*1000*5 weights, 7*1000 biases, 7 slopes
    timit = 400_000 + 30_000_000 + 7_000 + 7
    counts = {
        "wsj": num_params(W2lConvStack(80, W2L_WSJ_LAYERS, "glu")),
        "wsj_wn": num_params(W2lConvStack(80, W2L_WSJ_LAYERS, "glu", weight_norm=True)),
        "timit": num_params(W2lConvStack(80, W2L_TIMIT_LAYERS, "prelu")),
    }
    print("parameters (input dim 80):", counts)
    assert counts == {"wsj": wsj_plain, "wsj_wn": wsj_wn, "timit": timit}


@pytest.mark.parametrize("activation", ["relu", "prelu", "glu"])
def test_activation_matches_functional(activation):
    """Each block is pad -> conv -> activation, with the padding centred as documented."""
    torch.manual_seed(0)
    stack = W2lConvStack(6, [(4, 4, 2, 0.0)], activation=activation).eval()
    x = torch.randn(1, 9, 6)
    out, lengths = stack(x, torch.tensor([9]))
    conv = stack.blocks[0].conv
    assert conv.out_channels == (8 if activation == "glu" else 4)
    y = F.conv1d(F.pad(x.transpose(1, 2), (1, 2)), conv.weight, conv.bias, stride=2)
    if activation == "glu":
        y = y[:, :4] * torch.sigmoid(y[:, 4:])
    elif activation == "prelu":
        y = torch.where(y > 0, y, 0.25 * y)
    else:
        y = y.clamp(min=0)
    assert lengths.tolist() == [5]
    torch.testing.assert_close(out, y.transpose(1, 2))


def test_weight_norm_reparametrises_each_output_channel():
    stack = W2lConvStack(6, [(4, 3, 1, 0.0)], activation="glu", weight_norm=True)
    conv = stack.blocks[0].conv
    gain = conv.parametrizations.weight.original0
    assert gain.shape == (8, 1, 1)
    torch.testing.assert_close(conv.weight.norm(dim=(1, 2)), gain.view(-1))


def test_length_arithmetic_follows_strides_only():
    stack = W2lConvStack(3, [(4, 5, 2, 0.0), (4, 2, 3, 0.0), (4, 7, 1, 0.0)], activation="relu").eval()
    n = torch.arange(0, 40)
    assert stack.output_lengths(n).tolist() == [math.ceil(v / 6) for v in range(40)]
    for tsz in (1, 5, 6, 7, 31):
        out, lengths = stack(torch.randn(1, tsz, 3), torch.tensor([tsz]))
        assert out.shape[1] == lengths.item() == math.ceil(tsz / 6)


@pytest.mark.parametrize("activation, weight_norm", [("glu", True), ("prelu", False), ("relu", False)])
def test_batch_and_single_utterance_agree(activation, weight_norm):
    torch.manual_seed(0)
    layers = "[(16, 5, 2, 0.2), (16, 4, 1, 0.2), (12, 3, 3, 0.2), (8, 1, 1, 0.2)]"
    stack = W2lConvStack(10, layers, activation=activation, weight_norm=weight_norm).eval()
    lengths = torch.tensor([40, 23, 1])
    x = torch.randn(3, 40, 10)
    for b, n in enumerate(lengths.tolist()):
        x[b, n:] = float("nan")  # whatever sits on padded frames must not leak
    out, out_lengths = stack(x, lengths)
    assert out_lengths.tolist() == [7, 4, 1]
    for b, n in enumerate(lengths.tolist()):
        single, single_len = stack(x[b:b + 1, :n], lengths[b:b + 1])
        assert single_len.item() == out_lengths[b].item()
        torch.testing.assert_close(out[b:b + 1, :single_len.item()], single, rtol=1e-5, atol=1e-6)
        assert torch.equal(out[b, single_len.item():], torch.zeros_like(out[b, single_len.item():]))


def test_code_in_layer_string_is_never_run(tmp_path):
    target = tmp_path / "x"
    spec = f"__import__('os').system('touch {target}')"
    with pytest.raises(ValueError) as err:
        parse_layers(spec, "w2l_layers")
    assert "w2l_layers" in str(err.value) and spec in str(err.value)
    assert not target.exists()
    with pytest.raises(ValueError, match="conv_layers"):
        W2lConvStack(80, spec)
    assert not target.exists()


@pytest.mark.parametrize("spec, reason", [
    ("[(100, 13, 1)]", "layer 0 is (100, 13, 1)"),
    ("[(100, 13, 1, 0.25), (0, 3, 1, 0.1)]", "layer 1 out_channels must be a positive int, got 0"),
    ("[(100, 13, 1, 1.5)]", "layer 0 dropout must be in [0, 1), got 1.5"),
    ("[(100, 3.5, 1, 0.1)]", "layer 0 kernel must be a positive int, got 3.5"),
    ("[(100, 3, True, 0.1)]", "layer 0 stride must be a positive int, got True"),
    ("[]", "non-empty"),
    ("(100, 13, 1, 0.25", "not a literal"),
    ("layers", "not a literal"),
])
def test_bad_layer_strings(spec, reason):
    with pytest.raises(ValueError) as err:
        parse_layers(spec, "w2l_layers")
    message = str(err.value)
    assert message.startswith("w2l_layers") and repr(spec) in message and reason in message


def test_unknown_activation():
    with pytest.raises(ValueError, match="tanh"):
        W2lConvStack(80, W2L_TINY_LAYERS, activation="tanh")
