"""What the acoustic model reads: normalised continuous inputs, cached or computed on the fly."""

import pytest
import torch

from _asr_util import corpus_with_upstreams
from fairseq_vqw2v.cli.featurize import main as featurize_main
from fairseq_vqw2v.models.w2l_ctc import W2lCtcConfig, W2lCtcModel
from fairseq_vqw2v.modules.input_norm import InputNorm
from fairseq_vqw2v.tasks.asr import AsrConfig, AsrTask


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return corpus_with_upstreams(tmp_path_factory.mktemp("am_inputs"), (("train", 2), ("valid", 3)))


def model_inputs(data, kind, vq, bert, model_flags=None, **task_flags):
    """(the model, the valid split in one padded batch, the model's normalised input for it)."""
    task = AsrTask.setup_task(AsrConfig(data=str(data), input=kind, upstream=vq, bert=bert,
                                        **task_flags))
    task.load_dataset("valid")
    cfg = W2lCtcConfig(input=kind, upstream=vq, bert=bert, **(model_flags or {}))
    task.record_inputs(cfg)
    torch.manual_seed(0)
    model = W2lCtcModel(cfg, len(task.target_dictionary)).eval()
    dataset = task.dataset("valid")
    batch = dataset.collater([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        x, lengths = model.features(**batch["net_input"])
    return model, x, lengths


@pytest.mark.parametrize("kind", ["utterance", "frame"])
def test_input_norm_ignores_padding_and_zeroes_it(kind):
    torch.manual_seed(0)
    norm = InputNorm(kind, 4)
    if kind == "frame":  # not the identity gain and bias of a fresh LayerNorm
        torch.nn.init.normal_(norm.norm.weight)
        torch.nn.init.normal_(norm.norm.bias)
    x = 3.0 + 5.0 * torch.randn(2, 9, 4)
    alone = norm(x[:1, :6], torch.tensor([6]))
    padded = x.clone()
    padded[0, 6:] = 1e4  # whatever the padding holds, it must not count
    batched = norm(padded, torch.tensor([6, 9]))
    torch.testing.assert_close(batched[0, :6], alone[0])
    assert not batched[0, 6:].any()
    if kind == "utterance":
        torch.testing.assert_close(alone[0].mean(0), torch.zeros(4), atol=1e-5, rtol=0)
        torch.testing.assert_close(alone[0].var(0, unbiased=False), torch.ones(4), atol=1e-3, rtol=0)


def test_input_norm_applies_to_continuous_inputs_only(corpus):
    root, vq, bert = corpus
    for kind, normalised in (("logmel", False), ("units", False), ("wav2vec", True), ("bert", True)):
        model = W2lCtcModel(W2lCtcConfig(input=kind, upstream=vq, bert=bert, input_norm="frame"), 10)
        assert (model.input_norm.kind == "frame") == normalised, kind
    assert W2lCtcConfig().input_norm == "utterance"


@pytest.mark.parametrize("norm", ["utterance", "frame"])
def test_cached_and_on_the_fly_c_give_the_same_model_input(corpus, norm):
    root, vq, bert = corpus
    feats = root / "c_feats"
    if not feats.exists():
        assert featurize_main(["--vq-checkpoint", vq, "--manifest-dir", str(root / "data"),
                               "--split", "valid", "--dest", str(feats)]) == 0
    flags = {"input_norm": norm}
    _, live, live_lengths = model_inputs(root / "data", "wav2vec", vq, bert, flags)
    _, cached, cached_lengths = model_inputs(root / "data", "wav2vec", vq, bert, flags,
                                             features=str(feats))
    assert live_lengths.tolist() == cached_lengths.tolist()
    # the cache holds fp16: about 11 significant bits of c before normalising
    torch.testing.assert_close(cached, live, atol=5e-3, rtol=5e-3)
    assert live.abs().max() > 0.5
