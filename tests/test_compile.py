"""``compile`` (a model option of all three trainings): torch.compile where kernels can be built,
the same outputs as eager; elsewhere eager, with one message."""

import pytest
import torch
from torch._dynamo.utils import counters

from fairseq_vqw2v.models.unit_bert import UnitBertConfig, UnitBertModel
from fairseq_vqw2v.models.vq_wav2vec import VqWav2VecConfig, VqWav2VecModel
from fairseq_vqw2v.models.w2l_ctc import W2lCtcConfig, W2lCtcModel
from fairseq_vqw2v.precision import compile_missing


def vq_wav2vec(compile):
    model = VqWav2VecModel(VqWav2VecConfig(
        conv_feature_layers="[(32, 10, 5), (32, 8, 4), (32, 4, 2), (32, 4, 2), (32, 4, 2)]",
        conv_aggregator_layers="[(32, 2, 1), (48, 3, 1)]", vq_vars=8, infonce=False,
        max_update=100, compile=compile))
    source = torch.randn(2, 4000)
    padding_mask = torch.zeros(2, 4000, dtype=torch.bool)
    padding_mask[1, 3000:] = True
    return model, lambda m: m.extract_features(source, padding_mask)["c"]


def unit_bert(compile):
    cfg = UnitBertConfig(encoder_layers=2, encoder_embed_dim=32, encoder_ffn_embed_dim=64,
                         encoder_attention_heads=2, max_positions=64, compile=compile)
    tokens = torch.randint(4, 40, (3, 20))
    tokens[2, 15:] = 1  # padding
    return UnitBertModel(cfg, 40, padding_idx=1), lambda m: m(tokens)


def w2l_ctc(compile):
    model = W2lCtcModel(W2lCtcConfig(input="logmel", upstream=None, bert=None, compile=compile), 12)
    source, lengths = torch.randn(2, 8000), torch.tensor([8000, 6000])
    return model, lambda m: m(source, lengths)["logits"]


MODELS = [vq_wav2vec, unit_bert, w2l_ctc]


def eager_and(build, compile):
    """(eager outputs, outputs of the same weights built with ``compile``), in evaluation; the
    graphs dynamo compiled are counted in ``counters``."""
    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    eager, run = build(False)
    torch.manual_seed(0)
    other, _ = build(compile)
    other.load_state_dict(eager.state_dict())
    with torch.no_grad():
        return run(eager.eval()), run(other.eval())


@pytest.mark.parametrize("build", MODELS)
def test_compile_without_a_cpp_compiler_runs_eager_and_says_so(build, caplog):
    if torch.cuda.is_available():
        pytest.skip("checks the CPU fallback")
    with torch._inductor.config.patch({"cpp.cxx": (None, "/nonexistent/g++")}), caplog.at_level("WARNING"):
        expected, out = eager_and(build, compile=True)
    assert caplog.messages == ["--compile is off, the model runs uncompiled: torch.compile on CPU "
                               "needs a C++ compiler (g++ or clang++; set CXX)"]
    assert torch.equal(out, expected) and counters["stats"]["unique_graphs"] == 0


@pytest.mark.slow  # compiling: 10-30 s of CPU per model
@pytest.mark.skipif(compile_missing("cpu") is not None, reason=str(compile_missing("cpu")))
@pytest.mark.parametrize("build", MODELS)
def test_compiled_model_matches_eager_on_cpu(build):
    expected, out = eager_and(build, compile=True)
    assert counters["stats"]["unique_graphs"] > 0
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
