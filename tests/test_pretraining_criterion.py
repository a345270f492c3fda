"""vqw2v_contrastive: parity with fairseq's wav2vec criterion, accuracy, statistics of split
batches, collapse warning."""

import logging
import math

import pytest
import torch
from fairseq.criterions.wav2vec_criterion import Wav2vecCriterion
from fairseq.logging import metrics
from fairseq.models.wav2vec.wav2vec import Wav2VecConfig, Wav2VecModel

import fairseq_vqw2v  # noqa: F401  (registers the criterion)
from fairseq_vqw2v.constants import SAMPLE_RATE
from fairseq_vqw2v.criterions.contrastive import (
    CollapseMonitor,
    ContrastiveCriterion,
    ContrastiveCriterionConfig,
)
from fairseq_vqw2v.models.vq_wav2vec import VqWav2VecConfig, VqWav2VecModel
from fairseq_vqw2v.modules.perplexity import perplexity

TINY_ENCODER = "[(32, 10, 5), (32, 8, 4), (32, 4, 2), (32, 4, 2), (32, 4, 2)]"
TINY_AGGREGATOR = "[(32, 3, 1), (32, 3, 1)]"


def reference_model(vq_type, infonce=False, balanced_classes=False):
    """fairseq's own Wav2VecModel: the output format our criterion must accept."""
    cfg = Wav2VecConfig(
        conv_feature_layers=TINY_ENCODER,
        conv_aggregator_layers=TINY_AGGREGATOR,
        prediction_steps=3,
        num_negatives=4,
        vq_type=vq_type,
        vq_vars=16,
        vq_dim=32,
        infonce=infonce,
        balanced_classes=balanced_classes,
        skip_connections_agg=True,
        log_compression=True,
    )
    torch.manual_seed(0)
    return Wav2VecModel.build_model(cfg, task=None)


def sample(batch=2, samples=4000):
    torch.manual_seed(1)
    t = torch.arange(samples) / SAMPLE_RATE
    source = torch.sin(2 * math.pi * 220 * t) + 0.3 * torch.randn(batch, samples)
    return {"id": torch.arange(batch), "net_input": {"source": source}}


def ours(**kwargs):
    kwargs.setdefault("collapse_warn_fraction", 0.0)
    return ContrastiveCriterion(None, ContrastiveCriterionConfig(**kwargs))


def run(criterion, model, batch, seed=3):
    # negatives (and Gumbel noise) are random: same seed, same net output for both criteria
    torch.manual_seed(seed)
    return criterion(model, batch)


def balanced_accuracy(model, batch, seed=3):
    """Mean of the shares of positives with logit > 0 and of negatives with logit < 0 (each
    negative weighted as the model's target weights say), from the net output the criteria saw."""
    torch.manual_seed(seed)
    out = model(**batch["net_input"])
    logits, targets, weights = out["cpc_logits"], out["cpc_targets"], None
    if isinstance(targets, tuple):
        targets, weights = targets
    target = targets > 0.5
    right = ((logits > 0) == target).double()
    if weights is not None:
        return float((right * weights).sum() / weights.sum())
    return float(right[target].mean() + right[~target].mean()) / 2


@pytest.mark.parametrize(
    "vq_type,infonce,loss_weights,balanced",
    [
        ("gumbel", False, [1.0], False),
        ("gumbel", True, [0.5], False),
        ("kmeans", False, [1.0], False),
        ("none", False, None, True),
    ],
)
def test_same_loss_as_fairseq_wav2vec_criterion(vq_type, infonce, loss_weights, balanced):
    model = reference_model(vq_type, infonce, balanced)
    model.train()
    batch = sample()
    log_keys = ["prob_perplexity", "code_perplexity", "temp"]
    reference = Wav2vecCriterion(None, infonce, list(loss_weights or []) or None, log_keys)
    ref_loss, ref_size, ref_log = run(reference, model, batch)
    loss, size, log = run(ours(infonce=infonce, loss_weights=loss_weights), model, batch)

    assert size == ref_size
    torch.testing.assert_close(loss, ref_loss)
    for key, value in ref_log.items():
        assert log[key] == pytest.approx(value), key
    if not infonce:  # the BCE loss logs no accuracy of its own: ours is balanced
        assert log["correct"] / log["count"] == pytest.approx(balanced_accuracy(model, batch))
    if vq_type != "none":
        assert "code_perplexity" in ref_log  # compared with fairseq's above
        assert "loss_1" in log  # the extra loss (diversity or k-means) was added


def test_binary_accuracy_is_balanced_between_positives_and_negatives():
    model = reference_model("none")
    model.eval()
    batch = sample()
    loss, _, log = run(ours(), model, batch)
    torch.manual_seed(3)
    net_output = model(**batch["net_input"])
    logits, target = net_output["cpc_logits"], net_output["cpc_targets"] > 0.5
    # one in (1 + negatives) logits is a positive
    assert target.sum() == logits.numel() / (1 + 4)
    recall_pos = (logits[target] > 0).float().mean()
    recall_neg = (logits[~target] < 0).float().mean()
    assert log["correct"] / log["count"] == pytest.approx(float(recall_pos + recall_neg) / 2)
    assert log["count"] == pytest.approx(logits.numel())
    assert torch.isfinite(loss)


def our_model(vq_type):
    """Our vq_wav2vec, whose quantizers give the counts the statistics are derived from."""
    torch.manual_seed(0)
    return VqWav2VecModel(VqWav2VecConfig(
        conv_feature_layers=TINY_ENCODER, conv_aggregator_layers=TINY_AGGREGATOR,
        prediction_steps=3, num_negatives=4, vq_type=vq_type, vq_vars=16, infonce=False,
        max_update=100,
    ))


def reduced(logging_outputs):
    with metrics.aggregate() as agg:
        ContrastiveCriterion.reduce_metrics(logging_outputs)
        return agg.get_smoothed_values()


def test_reduce_metrics_logs_accuracy_and_perplexities():
    model = our_model("gumbel")
    model.train()
    batch = sample()
    _, _, log = run(ours(loss_weights=[1.0]), model, batch)
    torch.manual_seed(3)  # the same Gumbel samples as the criterion's forward
    out = model(**batch["net_input"])
    values = reduced([log, log])
    assert values["accuracy"] == pytest.approx(log["correct"] / log["count"], abs=1e-5)
    # one batch twice: the same histograms, so the same perplexities as the batch's own
    assert values["code_perplexity"] == pytest.approx(float(out["code_perplexity"]), abs=1e-3)
    assert values["prob_perplexity"] == pytest.approx(float(out["prob_perplexity"]), abs=1e-3)
    assert values["distinct_codes"] == len(torch.unique(out["codes"].reshape(-1, 2), dim=0))
    assert values["temp"] == pytest.approx(2.0)
    assert values["loss"] == pytest.approx(log["loss"] / log["sample_size"] / math.log(2), 1e-3)


@pytest.mark.parametrize("vq_type", ["gumbel", "kmeans"])
def test_statistics_of_split_batches_are_those_of_the_whole_batch(vq_type):
    """What fairseq does with two workers (or --update-freq 2): each computes half the batch and
    the logging outputs are summed; the codebook statistics must be the whole batch's."""
    model = our_model(vq_type)
    model.eval()  # argmax codes: the same for an utterance whatever batch it is in
    # halves of different sounds (tone in noise, loud noise), which use partly different codes
    noise = torch.randn(2, 4000, generator=torch.Generator().manual_seed(5))
    source = torch.cat([sample()["net_input"]["source"], noise])
    batch = {"id": torch.arange(4), "net_input": {"source": source}}
    halves = [
        {"id": batch["id"][i : i + 2], "net_input": {"source": batch["net_input"]["source"][i : i + 2]}}
        for i in (0, 2)
    ]
    criterion = ours()
    whole = reduced([run(criterion, model, batch)[2]])
    split_logs = [run(criterion, model, half)[2] for half in halves]
    split = reduced(split_logs)
    # fairseq's distributed path: one logging output holding the sums
    summed = reduced([{k: sum(log[k] for log in split_logs) for k in split_logs[0]}])

    codes = model.extract_features(batch["net_input"]["source"])["idx"].reshape(-1, 2)
    histogram = torch.stack([torch.bincount(codes[:, g], minlength=16) for g in range(2)]).float()
    expected = {
        "code_perplexity": float(perplexity(histogram / histogram.sum(-1, keepdim=True))),
        "distinct_codes": len(torch.unique(codes, dim=0)),
    }
    for key, value in expected.items():
        # logged rounded to 3 decimals
        assert whole[key] == pytest.approx(value, abs=1e-3), key
        assert split[key] == pytest.approx(value, abs=1e-3), key
        assert summed[key] == pytest.approx(value, abs=1e-3), key
    if vq_type == "gumbel":
        assert split["prob_perplexity"] == pytest.approx(whole["prob_perplexity"], abs=1e-3)
        assert summed["prob_perplexity"] == pytest.approx(whole["prob_perplexity"], abs=1e-3)
    # the halves alone see fewer distinct tuples than the whole: a per-batch mean is wrong
    assert max(reduced([log])["distinct_codes"] for log in split_logs) < expected["distinct_codes"]


def test_array_log_keys_are_refused():
    with pytest.raises(ValueError, match="cannot be summed across workers"):
        ours(log_keys=["logits"])


def test_collapse_monitor_warns_after_warmup_once_per_interval():
    monitor = CollapseMonitor(fraction=0.05, after=10, interval=5)
    warnings = [monitor.update(step, 2.0, 640) for step in range(30)]
    fired = [step for step, w in enumerate(warnings) if w]
    assert fired == [10, 15, 20, 25]
    assert "code perplexity 2.0 of 640 possible codes after 10 updates" in warnings[10]
    assert "collapsed" in warnings[10] and "--loss-weights" in warnings[10]


def test_collapse_monitor_quiet_on_healthy_or_recovering_codebook():
    healthy = CollapseMonitor(fraction=0.05, after=0, interval=4)
    assert not any(healthy.update(step, 200.0, 640) for step in range(20))
    # one bad step in a healthy window does not trigger it: the window mean decides
    recovering = CollapseMonitor(fraction=0.05, after=0, interval=4)
    values = [300.0, 300.0, 300.0, 2.0, 300.0]
    assert not any(recovering.update(step, v, 640) for step, v in enumerate(values))
    disabled = CollapseMonitor(fraction=0.0, after=0, interval=1)
    assert not any(disabled.update(step, 1.0, 640) for step in range(5))


def test_criterion_warns_on_collapse_from_the_update_counts_once(caplog):
    model = our_model("gumbel")
    model.train()
    # a 16 x 2 codebook on one batch of noise never reaches 99 % of its codes
    criterion = ours(collapse_warn_fraction=0.99, collapse_warn_after=2, collapse_warn_interval=3)
    batch = sample()
    caplog.set_level(logging.WARNING, logger="fairseq_vqw2v.criterions.contrastive")
    for step in range(6):
        criterion.set_num_updates(step)
        # two batches per update, as two workers or --update-freq 2 give
        criterion.observe_update([run(criterion, model, batch)[2] for _ in range(2)])
    messages = [r.getMessage() for r in caplog.records if "collapsed" in r.getMessage()]
    assert len(messages) == 2  # updates 2 and 5
    assert "of 32 possible codes after 2 updates" in messages[0]


@pytest.mark.parametrize("loss_weights", [None, [0.0], [1.0]])
def test_kmeans_without_its_loss_weight_warns_once_that_the_codebook_stays(loss_weights, caplog):
    model = our_model("kmeans")
    model.train()
    criterion = ours(loss_weights=loss_weights)
    caplog.set_level(logging.WARNING, logger="fairseq_vqw2v.criterions.contrastive")
    for _ in range(2):
        run(criterion, model, sample())
    messages = [r.getMessage() for r in caplog.records if "codewords stay" in r.getMessage()]
    assert len(messages) == (0 if loss_weights == [1.0] else 1)
