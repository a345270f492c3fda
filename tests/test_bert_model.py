"""unit_bert model: shapes, padding invariance, masked-only head, layers, archs, fast kernels."""

import argparse
import os
import subprocess
import sys

import pytest
import torch

from fairseq.models import ARCH_MODEL_REGISTRY, ARCH_CONFIG_REGISTRY

from fairseq_vqw2v.criterions.span_mlm import count_hits
from fairseq_vqw2v.models.unit_bert import UnitBertConfig, UnitBertModel
from fairseq_vqw2v.modules.fast_dropout import attention, dropout, keep_scale
from fairseq_vqw2v.modules import onednn_linear
from fairseq_vqw2v.modules.onednn_linear import linear

PAD = 1


def _model(**kwargs):
    cfg = UnitBertConfig(encoder_layers=2, encoder_embed_dim=32, encoder_ffn_embed_dim=64,
                         encoder_attention_heads=4, max_positions=40, **kwargs)
    torch.manual_seed(0)
    return UnitBertModel(cfg, vocab_size=30, padding_idx=PAD).eval()


def test_padding_does_not_change_outputs():
    model = _model()
    a = torch.randint(4, 30, (1, 12))
    b = torch.randint(4, 30, (1, 20))
    batch = torch.full((2, 20), PAD)
    batch[0, :12], batch[1] = a[0], b[0]
    with torch.no_grad():
        out = model(batch)
        assert out.shape == (2, 20, 30)
        torch.testing.assert_close(out[0, :12], model(a)[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[1], model(b)[0], atol=1e-5, rtol=1e-5)


def test_masked_tokens_select_rows_of_full_logits():
    model = _model()
    tokens = torch.randint(4, 30, (3, 16))
    masked = torch.rand(3, 16) < 0.4
    with torch.no_grad():
        torch.testing.assert_close(model(tokens, masked_tokens=masked), model(tokens)[masked])


def test_layer_features_and_bounds():
    model = _model()
    tokens = torch.randint(4, 30, (2, 10))
    with torch.no_grad():
        last = model.extract_features(tokens)
        first = model.extract_features(tokens, layer=1)
        _, states = model.encoder(tokens, return_all=True)
    assert last.shape == first.shape == (2, 10, 32)
    torch.testing.assert_close(first, states[1])
    torch.testing.assert_close(last, states[2])
    with pytest.raises(ValueError, match="layer must be in 1..2"):
        model.extract_features(tokens, layer=3)
    with pytest.raises(ValueError, match="max_positions=40"):
        model(torch.randint(4, 30, (1, 41)))


def test_gradients_reach_all_parameters():
    model = _model().train()
    tokens = torch.randint(4, 30, (2, 16))
    model(tokens, masked_tokens=tokens > 15).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("onednn", [True, False])
def test_linear_matches_float64_reference_with_gradients(bias, onednn, monkeypatch):
    # both GEMM paths on every CPU, whichever this one prefers
    monkeypatch.setattr(onednn_linear, "PREFER_ONEDNN", onednn)
    torch.manual_seed(0)
    x = torch.randn(3, 7, 48, requires_grad=True)
    weight = (torch.randn(40, 48) * 0.1).requires_grad_()
    b = torch.randn(40, requires_grad=True) if bias else None
    grad = torch.randn(3, 7, 40)
    out = linear(x, weight, b)
    out.backward(grad)
    leaves = [x, weight] + ([b] if bias else [])
    ref_leaves = [t.detach().double().requires_grad_() for t in leaves]
    ref = torch.nn.functional.linear(*ref_leaves[:2], ref_leaves[2] if bias else None)
    ref.backward(grad.double())
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)
    for leaf, ref_leaf in zip(leaves, ref_leaves):
        torch.testing.assert_close(leaf.grad.double(), ref_leaf.grad, atol=1e-4, rtol=1e-5)


def test_onednn_cache_is_capped_by_a_task_not_by_an_import():
    """Importing the plugin changes no environment variable; building a task does (where the
    oneDNN layers are used), and a user's own setting wins."""
    code = """if True:
        import os
        import fairseq_vqw2v
        from fairseq_vqw2v.modules import onednn_linear
        from fairseq_vqw2v.tasks.asr import AsrConfig, AsrTask
        assert "ONEDNN_PRIMITIVE_CACHE_CAPACITY" not in os.environ
        onednn_linear.PREFER_ONEDNN = True
        AsrTask(AsrConfig(data="unused"), dictionary=None)
        assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "8"
        os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = "64"
        onednn_linear.limit_primitive_cache()
        assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "64"
    """
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize(
    "arch,layers,dim,ffn,heads,dropout",
    [("unit_bert_large", 24, 1024, 4096, 16, 0.1), ("unit_bert_base", 12, 768, 3072, 12, 0.1),
     ("unit_bert_small", 12, 512, 2048, 8, 0.05), ("unit_bert_tiny", 2, 128, 512, 4, 0.05)],
)
def test_archs_set_paper_sizes_but_keep_command_line_values(arch, layers, dim, ffn, heads, dropout):
    assert ARCH_MODEL_REGISTRY[arch] is UnitBertModel
    args = argparse.Namespace()
    ARCH_CONFIG_REGISTRY[arch](args)
    assert (args.encoder_layers, args.encoder_embed_dim, args.encoder_ffn_embed_dim,
            args.encoder_attention_heads, getattr(args, "dropout", UnitBertConfig.dropout)
            ) == (layers, dim, ffn, heads, dropout)
    args = argparse.Namespace(encoder_layers=3)
    ARCH_CONFIG_REGISTRY[arch](args)
    assert args.encoder_layers == 3


def test_fast_dropout_rate_scale_and_gradient_mask():
    torch.manual_seed(0)
    x = torch.rand(1000, 1000).add_(0.5).requires_grad_()
    y = dropout(x, 0.1, training=True)
    dropped = y == 0
    assert abs(dropped.float().mean().item() - 0.1) < 0.002
    torch.testing.assert_close(y[~dropped], x[~dropped] / 0.9)
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad == 0, dropped)
    torch.testing.assert_close(x.grad[~dropped], torch.full_like(x.grad[~dropped], 1 / 0.9))
    assert dropout(x, 0.1, training=False) is x


def test_attention_with_dropout_is_softmax_attention_with_the_dropped_probabilities():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8) for _ in range(3))
    pad = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])
    mask = torch.zeros(2, 1, 1, 5).masked_fill(pad[:, None, None], float("-inf"))
    torch.manual_seed(1)
    out = attention(q, k, v, mask, 0.3, training=True)
    torch.manual_seed(1)
    factor = keep_scale(torch.Size((2, 3, 5, 5)), 0.3, q.dtype, q.device)
    assert factor.unique().tolist() == [0.0, pytest.approx(1 / 0.7)]
    probs = torch.softmax(q @ k.transpose(-1, -2) / 8**0.5 + mask, -1)
    torch.testing.assert_close(out, probs * factor @ v)
    torch.testing.assert_close(attention(q, k, v, mask, 0.3, training=False), probs @ v)


def test_masked_accuracy_counts_argmax_hits():
    torch.manual_seed(0)
    logits = torch.randn(500, 300)
    targets = torch.randint(0, 300, (500,))
    targets[:100] = logits[:100].argmax(-1)
    expected = int((logits.argmax(-1) == targets).sum())
    assert expected >= 100 and count_hits(logits, targets) == expected
