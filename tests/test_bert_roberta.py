"""fairseq roberta (masked_lm, trained by fairseq's own binaries) -> unit_bert conversion parity."""

import pytest
import torch

from fairseq import checkpoint_utils
from fairseq.criterions.masked_lm import MaskedLmConfig, MaskedLmLoss

from fairseq_vqw2v.checkpoint import fairseq_safe_globals, load_fairseq_checkpoint
from fairseq_vqw2v.criterions.span_mlm import SpanMlmCriterion
from fairseq_vqw2v.interop.roberta import convert_roberta_checkpoint, roberta_state_to_unit_bert
from fairseq_vqw2v.models.unit_bert import load_unit_bert

from _bert_util import write_unit_corpus


@pytest.fixture(scope="module")
def roberta(tmp_path_factory, fairseq_cli):
    """A 2-layer roberta trained for two updates by fairseq-train --task masked_lm."""
    root = tmp_path_factory.mktemp("roberta")
    units = write_unit_corpus(root / "units")
    prep = fairseq_cli("preprocess", "--only-source", "--srcdict", units / "dict.txt",
                       "--trainpref", units / "train.src", "--validpref", units / "valid.src",
                       "--destdir", root / "bin", "--workers", "1", plugin=False, threads=None)
    assert prep.returncode == 0, prep.stderr[-3000:]
    train = fairseq_cli("train", root / "bin", "--task", "masked_lm", "--arch", "roberta_base",
                        "--criterion", "masked_lm", "--encoder-layers", "2", "--encoder-embed-dim", "64",
                        "--encoder-ffn-embed-dim", "128", "--encoder-attention-heads", "4",
                        "--max-positions", "128", "--tokens-per-sample", "128",
                        "--sample-break-mode", "eos", "--mask-prob", "0.5", "--mask-multiple-length", "10",
                        "--optimizer", "adam", "--lr", "1e-3", "--max-update", "2", "--max-tokens", "2000",
                        "--save-dir", root / "ckpt", "--no-epoch-checkpoints", "--seed", "3",
                        plugin=False, threads=None)
    assert train.returncode == 0, train.stderr[-3000:]
    return root


def test_converted_roberta_matches_fairseq(roberta, tmp_path):
    dest = convert_roberta_checkpoint(str(roberta / "ckpt" / "checkpoint_last.pt"),
                                      str(tmp_path / "bert.pt"))
    assert (tmp_path / "dict.txt").exists()
    ours, dictionary = load_unit_bert(dest)
    with fairseq_safe_globals():
        (ref,), _, task = checkpoint_utils.load_model_ensemble_and_task(
            [str(roberta / "ckpt" / "checkpoint_last.pt")])
    ref.eval()
    assert len(dictionary) == len(task.dictionary)

    # logits on a batch with padding
    task.load_dataset("valid")
    data = task.dataset("valid")
    sample = data.collater([data[i] for i in range(8)])
    tokens = sample["net_input"]["src_tokens"]
    assert tokens.eq(dictionary.pad()).any()
    with torch.no_grad():
        theirs = ref(tokens)[0]
        mine = ours(tokens)
    real = tokens.ne(dictionary.pad())
    assert (theirs[real] - mine[real]).abs().max() < 1e-4

    # the same masked-LM loss from fairseq's criterion on roberta and ours on unit_bert
    with torch.no_grad():
        loss_ref, n_ref, _ = MaskedLmLoss(MaskedLmConfig(), task)(ref, sample)
        loss_ours, n_ours, log = SpanMlmCriterion(task)(ours, sample)
    assert n_ref == n_ours == log["nmasked"] > 0
    assert abs(loss_ref.item() - loss_ours.item()) < 1e-4 * abs(loss_ref.item())


def test_converter_refuses_unmapped_parameters():
    with pytest.raises(ValueError, match="no unit_bert counterpart"):
        roberta_state_to_unit_bert({"encoder.sentence_encoder.layers.0.adapter.weight": torch.ones(1)})
    with pytest.raises(ValueError, match="incomplete q/k/v"):
        roberta_state_to_unit_bert(
            {"encoder.sentence_encoder.layers.0.self_attn.q_proj.weight": torch.ones(1)})


def test_converter_needs_a_dictionary(roberta, tmp_path):
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes((roberta / "ckpt" / "checkpoint_last.pt").read_bytes())
    (roberta / "bin" / "dict.txt").rename(roberta / "bin" / "dict.moved")
    try:
        with pytest.raises(FileNotFoundError, match="dict.txt"):
            convert_roberta_checkpoint(str(tmp_path), str(tmp_path / "out" / "bert.pt"))
    finally:
        (roberta / "bin" / "dict.moved").rename(roberta / "bin" / "dict.txt")


def test_old_roberta_layout_maps_to_the_same_weights(roberta):
    """fairseq <= 0.9 names: decoder.*, emb_layer_norm, fused in_proj_weight/bias."""
    state = load_fairseq_checkpoint(str(roberta / "ckpt" / "checkpoint_last.pt"))["model"]
    old = {}
    for name, value in state.items():
        name = name.replace("encoder.", "decoder.", 1)
        name = name.replace("layernorm_embedding", "emb_layer_norm")
        if ".self_attn.q_proj." in name or ".self_attn.k_proj." in name:
            continue
        if ".self_attn.v_proj." in name:
            kind = name.rsplit(".", 1)[1]
            q, k, v = (state[name.replace("decoder.", "encoder.", 1).replace("v_proj", p)]
                       for p in ("q_proj", "k_proj", "v_proj"))
            name = name.replace(f"v_proj.{kind}", f"in_proj_{kind}")
            value = torch.cat([q, k, v])
        old[name] = value
    new, converted_old = roberta_state_to_unit_bert(state), roberta_state_to_unit_bert(old)
    assert new.keys() == converted_old.keys()
    for key in new:
        assert torch.equal(new[key], converted_old[key]), key
