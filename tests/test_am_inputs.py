"""What the acoustic model reads: normalised continuous inputs, BERT layers (one, or a learned
weighted sum of several), cached or computed on the fly."""

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf, open_dict

from _asr_util import corpus_with_upstreams
from fairseq_vqw2v.cli.featurize import main as featurize_main
from fairseq_vqw2v.data.feature_files import feature_index
from fairseq_vqw2v.data.manifest import ManifestError
from fairseq_vqw2v.models.frontends import FrontendSpec
from fairseq_vqw2v.models.w2l_ctc import W2lCtcConfig, W2lCtcModel
from fairseq_vqw2v.modules.input_norm import InputNorm
from fairseq_vqw2v.modules.layer_weights import WeightedLayerSum
from fairseq_vqw2v.tasks.asr import AsrConfig, AsrTask


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return corpus_with_upstreams(tmp_path_factory.mktemp("am_inputs"), (("train", 2), ("valid", 3)))


def featurized(root, vq, *flags):
    """The valid split featurized with ``flags`` into a folder of ``root`` (once per flags)."""
    dest = root / ("feats" + "".join(flags).replace("-", "_").replace(",", "_"))
    if not dest.exists():
        assert featurize_main(["--vq-checkpoint", vq, "--manifest-dir", str(root / "data"),
                               "--split", "valid", "--dest", str(dest), *flags]) == 0
    return str(dest)


def model_task(data, kind, vq, bert, model_flags=None, **task_flags):
    """(a task whose valid split is loaded, a model built by it as fairseq-train does)."""
    task = AsrTask.setup_task(AsrConfig(data=str(data), input=kind, upstream=vq, bert=bert,
                                        **task_flags))
    task.load_dataset("valid")
    cfg = OmegaConf.structured(W2lCtcConfig(input=kind, labels="ltr", upstream=vq, bert=bert,
                                            **(model_flags or {})))
    with open_dict(cfg):
        cfg._name = "w2l_ctc"
    torch.manual_seed(0)
    return task, task.build_model(cfg).eval()


def valid_batch(task):
    dataset = task.dataset("valid")
    return dataset.collater([dataset[i] for i in range(len(dataset))])["net_input"]


def model_inputs(data, kind, vq, bert, model_flags=None, **task_flags):
    """(the model, its normalised input for the valid split in one padded batch, lengths)."""
    task, model = model_task(data, kind, vq, bert, model_flags, **task_flags)
    with torch.no_grad():
        x, lengths = model.features(**valid_batch(task))
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
    feats = featurized(root, vq)
    flags = {"input_norm": norm}
    _, live, live_lengths = model_inputs(root / "data", "wav2vec", vq, bert, flags)
    _, cached, cached_lengths = model_inputs(root / "data", "wav2vec", vq, bert, flags,
                                             features=feats)
    assert live_lengths.tolist() == cached_lengths.tolist()
    # the cache holds fp16: about 11 significant bits of c before normalising
    torch.testing.assert_close(cached, live, atol=5e-3, rtol=5e-3)
    assert live.abs().max() > 0.5


def test_weighted_layer_sum_starts_equal_and_picks_one_layer_with_one_hot_weights():
    x = torch.randn(2, 5, 3, 4)  # B x T x K x C
    mix = WeightedLayerSum(3)
    torch.testing.assert_close(mix(x), x.mean(2))
    with torch.no_grad():
        mix.weights.copy_(torch.tensor([-float("inf"), 0.0, -float("inf")]))
    assert torch.equal(mix(x), x[:, :, 1])


@pytest.mark.parametrize("cached", [False, True])
def test_all_bert_layers_are_summed_with_trainable_saved_weights(corpus, cached):
    """``--bert-layers all``: the embeddings' output and every layer (the test BERT has one), on
    the fly or from ``featurize --layers all``; the weights get gradients and are in the state."""
    root, vq, bert = corpus
    features = {"features": featurized(root, vq, "--bert-checkpoint", bert, "--layers", "all")}
    task, model = model_task(root / "data", "bert", vq, bert, {"bert_layers": "all"},
                             **(features if cached else {}))
    assert model.frontend.output_layers == 2
    assert model.layer_weights.weights.requires_grad
    assert "layer_weights.weights" in model.state_dict()
    model.train()
    model(**valid_batch(task))["logits"].sum().backward()
    assert model.layer_weights.weights.grad.abs().sum() > 0


def test_cached_bert_layers_equal_the_ones_computed_on_the_fly(corpus):
    root, vq, bert = corpus
    cached = featurized(root, vq, "--bert-checkpoint", bert, "--layers", "all")
    assert (feature_index(cached, "valid")[0].shape[1:]) == (2, 32)
    outputs = []
    for flags in ({}, {"features": cached}):
        task, model = model_task(root / "data", "bert", vq, bert, {"bert_layers": "all"}, **flags)
        with torch.no_grad():
            x, lengths = model.frontend(**dict(zip(("source", "lengths"), valid_batch(task).values())))
        outputs.append([x[b, :n] for b, n in enumerate(lengths.tolist())])
    for live, from_file in zip(*outputs):
        assert live.shape == from_file.shape and live.dim() == 3  # T x K x C
        # fp16 storage: half a unit in the last place of 11 significant bits
        torch.testing.assert_close(from_file, live, rtol=2 ** -11, atol=1e-4)
        assert not torch.equal(live[:, 0], live[:, 1])


def test_bert_layers_select_among_the_cached_layers(corpus):
    """``--bert-layers`` with ``--features``: a layer of those featurize cached is read alone,
    one it did not cache is refused by name (it was silently ignored)."""
    root, vq, bert = corpus
    cached = featurized(root, vq, "--bert-checkpoint", bert, "--layers", "all")
    task, both = model_task(root / "data", "bert", vq, bert, features=cached)
    _, second = model_task(root / "data", "bert", vq, bert, {"bert_layers": "1"}, features=cached)
    assert both.frontend.output_layers == 2 and second.frontend.output_layers == 1
    assert second.layer_weights is None
    batch = valid_batch(task)
    with torch.no_grad():
        x, _ = both.frontend(batch["source"], batch["source_lengths"])
        layer, _ = second.frontend(batch["source"], batch["source_lengths"])
    assert torch.equal(layer, x[:, :, 1])
    with pytest.raises(ValueError, match=r"--bert-layers 0,3: layer\(s\) 3 are not in the cached "
                       r"features \(layers 0,1"):
        model_task(root / "data", "bert", vq, bert, {"bert_layers": "0,3"}, features=cached)
    last = featurized(root, vq, "--bert-checkpoint", bert)
    with pytest.raises(ValueError, match="--bert-layers all: the cached features hold one layer"):
        model_task(root / "data", "bert", vq, bert, {"bert_layers": "all"}, features=last)


def test_features_of_other_layers_than_the_models_are_refused(corpus):
    root, vq, bert = corpus
    layers = featurized(root, vq, "--bert-checkpoint", bert, "--layers", "all")
    _, model = model_task(root / "data", "bert", vq, bert, features=layers)
    # decoding it (fairseq-generate builds the model from its checkpoint, then loads the split)
    # with features of the last layer only
    last = featurized(root, vq, "--bert-checkpoint", bert)
    # the features it was trained on are accepted, those of another layer list are not
    same = AsrTask.setup_task(AsrConfig(data=str(root / "data"), input="bert", features=layers))
    same.build_model(OmegaConf.create(OmegaConf.to_container(model.cfg)), from_checkpoint=True)
    same.load_dataset("valid")
    task = AsrTask.setup_task(AsrConfig(data=str(root / "data"), input="bert", features=last))
    cfg = OmegaConf.create(OmegaConf.to_container(model.cfg))
    task.build_model(cfg, from_checkpoint=True)
    with pytest.raises(ManifestError, match=r"valid.feats.npy: one layer of 32 channels per frame, "
                       r"but the acoustic model was trained on 2 layers \(0,1\) of 32 channels"):
        task.load_dataset("valid")
    assert np.asarray(feature_index(last, "valid")[0]).ndim == 2


def test_the_task_resolves_what_the_model_reads_once_and_the_model_reads_it_back(corpus):
    root, vq, bert = corpus
    features = featurized(root, vq, "--bert-checkpoint", bert, "--layers", "all")
    task, model = model_task(root / "data", "bert", vq, bert, features=features)
    spec = FrontendSpec.of_model(model.cfg)
    assert spec == task.frontend_spec == FrontendSpec(
        input="bert", source="features", upstream=vq, bert=bert, feature_dim=32,
        feature_layers=(0, 1))
    task, model = model_task(root / "data", "bert", vq, bert)
    assert FrontendSpec.of_model(model.cfg) == FrontendSpec.resolve(
        "bert", vq, bert, features=None, units_dir=None, split="valid")
    assert len(task.frontend_spec.upstream_sha256) == len(task.frontend_spec.bert_sha256) == 64
    with pytest.raises(ValueError, match="--input bert needs --bert PATH"):
        FrontendSpec.resolve("bert", vq, None, features=None, units_dir=None, split="valid")


def test_a_model_saved_before_the_new_options_is_rebuilt_as_it_was_trained(corpus):
    """Decoding an acoustic model whose config lacks --input-norm, --bert-layers and the feature
    layers: raw inputs, the layer it recorded (--bert-layer), one layer per cached frame."""
    root, vq, bert = corpus
    _, model = model_task(root / "data", "bert", vq, bert)
    saved = OmegaConf.to_container(model.cfg)
    for new in ("input_norm", "bert_layers", "feature_layers"):
        del saved[new]
    saved["bert_layer"] = 0
    saved["_name"] = "w2l_ctc_tiny"  # as fairseq-train saves it: the arch, whose defaults are not merged
    task = AsrTask.setup_task(AsrConfig(data=str(root / "data"), input="bert"))
    old = task.build_model(OmegaConf.create(saved), from_checkpoint=True)
    assert old.input_norm.kind == "none" and old.layer_weights is None
    assert old.frontend.featurizer.layers == [0]
    assert task.frontend_spec == FrontendSpec.of_model(model.cfg)
