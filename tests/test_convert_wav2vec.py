"""fairseq's reference ``wav2vec`` trained by ``fairseq-train`` -> converted -> same numbers."""

import numpy as np
import pytest
import torch
from fairseq import checkpoint_utils, options
from fairseq.criterions.wav2vec_criterion import Wav2vecCriterion
from fairseq.tasks import TASK_REGISTRY
from fairseq.tasks.audio_pretraining import AudioPretrainingConfig, AudioPretrainingTask

import fairseq_vqw2v  # noqa: F401  registers vq_wav2vec
from fairseq_vqw2v.constants import SAMPLE_RATE
from fairseq_vqw2v.checkpoint import fairseq_safe_globals
from fairseq_vqw2v.cli.convert import main as convert_main
from fairseq_vqw2v.interop.wav2vec import convert_wav2vec_checkpoint
from fairseq_vqw2v.models.vq_wav2vec import VqWav2VecModel

TINY = [
    "--conv-feature-layers", "[(32, 10, 5), (32, 8, 4), (32, 4, 2), (32, 4, 2), (32, 4, 2)]",
    "--conv-aggregator-layers", "[(32, 2, 1), (48, 3, 1), (48, 4, 1)]",
    "--prediction-steps", "4", "--num-negatives", "5", "--activation", "gelu",
]
VQ_FLAGS = {
    "gumbel": ["--vq-type", "gumbel", "--vq-vars", "16", "--vq-depth", "2", "--combine-groups"],
    "kmeans": ["--vq-type", "kmeans", "--vq-vars", "16", "--loss-weights", "[1]"],
    "none": ["--vq-type", "none"],
}


def _tones(count=4):
    """One second of a distinct tone in noise per utterance."""
    rng = np.random.default_rng(0)
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    return [(0.3 * np.sin(2 * np.pi * (150 + 90 * i) * t) + 0.05 * rng.standard_normal(t.size))
            .astype(np.float32) for i in range(count)]


def _train_reference(fairseq_cli, data, save_dir, vq_type):
    done = fairseq_cli(
        "train", data, "--task", "audio_pretraining", "--arch", "wav2vec", "--criterion", "wav2vec",
        *TINY, *VQ_FLAGS[vq_type], "--optimizer", "adam", "--lr", "1e-3", "--max-update", "2",
        "--batch-size", "2", "--save-dir", save_dir, "--no-epoch-checkpoints",
        "--disable-validation", "--num-workers", "0", "--seed", "1", plugin=False, threads=None,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return save_dir / "checkpoint_last.pt"


def _load(path, data):
    # without our pretraining task registered, any audio task can host the model
    task = None if "vqw2v_pretraining" in TASK_REGISTRY else AudioPretrainingTask(
        AudioPretrainingConfig(data=str(data))
    )
    with fairseq_safe_globals():
        models, _, _ = checkpoint_utils.load_model_ensemble_and_task([str(path)], task=task)
    return models[0]


def float32_conv_bound(stack: torch.nn.Module) -> float:
    """Relative bound on the difference of two float32 evaluations of a conv stack.

    Each output of a conv is a dot product of K = in_channels x kernel terms; summed in another
    order (another oneDNN kernel, thread split or vector width), it differs by at most
    2 * gamma_K ~ 2 * K * u of the sum of |terms| (Higham, Accuracy and Stability of Numerical
    Algorithms, eq. 3.4; u = 2^-24 for float32). Group norm rescales each layer to unit scale, so
    relative errors of the L layers add up: 2 * u * sum of K over the layers.
    """
    u = torch.finfo(torch.float32).eps / 2
    convs = [m for m in stack.modules() if isinstance(m, torch.nn.Conv1d)]
    return 2 * u * sum(m.in_channels // m.groups * m.kernel_size[0] for m in convs)


def assert_within(ours, ref, rel_bound, name):
    """max |ours - ref| <= rel_bound * max |ref| (same computation, float32 rounding apart)."""
    diff, scale = (ours - ref).abs().max().item(), ref.abs().max().item()
    assert diff <= rel_bound * scale, (
        f"max |{name}_ours - {name}_ref| = {diff:.2e} > {rel_bound:.1e} x max |{name}_ref| {scale:.2f}"
    )


def _loss(model, source, infonce, seed):
    criterion = Wav2vecCriterion(None, infonce=infonce, loss_weights=[1.0] if model.vector_quantizer else None)
    torch.manual_seed(seed)
    sample = {"net_input": {"source": source}, "id": torch.arange(len(source))}
    loss, _, _ = criterion(model, sample)
    return loss.item()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, write_manifest):
    root = tmp_path_factory.mktemp("audio")
    audio = _tones()
    for split in ("train", "valid"):
        write_manifest(root, audio, split)
    return root, torch.from_numpy(np.stack(audio[:2]))


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory, fairseq_cli):
    """vq_type -> checkpoint of fairseq's wav2vec after 2 updates (trained once per module)."""
    trained = {}

    def get(vq_type):
        if vq_type not in trained:
            trained[vq_type] = _train_reference(fairseq_cli, corpus[0], tmp_path_factory.mktemp(vq_type),
                                                vq_type)
        return trained[vq_type]

    return get


@pytest.mark.parametrize("vq_type", ["gumbel", "kmeans", "none"])
def test_converted_reference_checkpoint_matches(corpus, reference, tmp_path, vq_type, capsys):
    data, source = corpus
    src = reference(vq_type)
    dest = tmp_path / "ours.pt"
    assert convert_main(["wav2vec", str(src), str(dest)]) == 0
    assert "converted" in capsys.readouterr().out

    ref, ours = _load(src, data).eval(), _load(dest, data).eval()
    assert isinstance(ours, VqWav2VecModel) and ours.cfg.vq_type == vq_type
    with torch.no_grad():
        feats = ours.extract_features(source)
        z = ref.feature_extractor(source)
        q, idx = (ref.vector_quantizer.forward_idx(z) if ref.vector_quantizer else (z, None))
        c = ref.feature_aggregator(q)
    encoder = float32_conv_bound(ours.feature_extractor)
    assert_within(feats["z"], z, encoder, "z")
    assert_within(feats["q"], q, encoder, "q")
    assert_within(feats["c"], c, encoder + float32_conv_bound(ours.feature_aggregator), "c")
    if idx is None:
        assert "idx" not in feats
    else:
        assert torch.equal(feats["idx"], idx)

    # same seed -> same negatives (and Gumbel noise in training mode): same loss
    for train in (False, True):
        ref.train(train), ours.train(train)
        ref_loss, our_loss = _loss(ref, source, False, 3), _loss(ours, source, False, 3)
        assert our_loss == pytest.approx(ref_loss, rel=1e-5)


def test_convert_rejects_other_models(reference, tmp_path, capsys):
    src = reference("none")
    ours = tmp_path / "ours.pt"
    assert convert_main(["wav2vec", str(src), str(ours)]) == 0
    assert convert_main(["wav2vec", str(ours), str(tmp_path / "again.pt")]) == 1
    assert "expected a fairseq 'wav2vec' checkpoint, found model 'vq_wav2vec'" in capsys.readouterr().err


def test_converts_legacy_args_checkpoint(corpus, reference, tmp_path):
    """The released vq-wav2vec.pt / vq-wav2vec_kmeans.pt keep an argparse ``args``, not ``cfg``."""
    data, source = corpus
    trained = reference("gumbel")
    with fairseq_safe_globals():
        state = torch.load(trained)
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(
        parser,
        [str(data), "--task", "audio_pretraining", "--arch", "wav2vec", "--criterion", "wav2vec",
         *TINY, *VQ_FLAGS["gumbel"]],
    )
    legacy = tmp_path / "vq-wav2vec.pt"
    torch.save(
        {"args": args, "model": state["model"], "extra_state": {},
         "optimizer_history": [{"criterion_name": "Wav2vecCriterion", "optimizer_name": "Adam",
                                "lr_scheduler_state": {}, "num_updates": 2}]},
        legacy,
    )
    cfg = convert_wav2vec_checkpoint(str(legacy), str(tmp_path / "ours.pt"))
    assert cfg["vq_type"] == "gumbel" and cfg["combine_groups"] and cfg["vq_depth"] == 2
    ours = _load(tmp_path / "ours.pt", data).eval()
    ref = _load(trained, data).eval()
    with torch.no_grad():
        _, idx = ref.vector_quantizer.forward_idx(ref.feature_extractor(source))
    assert torch.equal(ours.extract_features(source)["idx"], idx)
