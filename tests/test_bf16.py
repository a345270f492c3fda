"""Mixed precision: which CPUs get bf16, fairseq's precision flags against ``--autocast``, the three
trainings under ``--autocast bf16`` (fairseq's own Trainer, in process), and their models in fp16
as fairseq's --fp16 runs them."""

import math

import pytest
import torch

from _asr_util import train_args, write_letter_corpus, write_upstreams
from _bert_util import write_unit_corpus
from _pretraining_util import USER_DIR, pretrain_args, write_corpus
from _train_util import batches, build_trainer, train
from fairseq.utils import apply_to_sample
from fairseq_vqw2v.precision import bf16_available, bf16_missing, cpu_bf16_missing

needs_bf16 = pytest.mark.skipif(not bf16_available("cpu"),
                                reason=f"no bf16 autocast: {bf16_missing('cpu')}")

# a loss under bf16 autocast (first update, valid step) is within this share of the fp32 one
LOSS_TOLERANCE = 0.02


def test_native_bf16_is_read_from_the_cpu_capabilities():
    zen3 = {"cpu_name": "AMD EPYC 7R13", "avx2": True, "avx512_f": False}
    assert cpu_bf16_missing(zen3) == ("this CPU (AMD EPYC 7R13) has no bf16 instructions "
                                      "(AVX512-BF16, AMX-BF16 or Arm BF16)")
    assert cpu_bf16_missing({"avx512_f": True, "avx512_bf16": True}) is None  # Zen 4, Cooper Lake
    assert cpu_bf16_missing({"amx_bf16": True}) is None  # Sapphire Rapids
    assert cpu_bf16_missing({"bf16": True, "sve_bf16": False}) is None  # Graviton 3


@pytest.fixture(scope="module")
def units(tmp_path_factory):
    return write_unit_corpus(tmp_path_factory.mktemp("units"))


def bert_args(data, *extra):
    return [data, "--user-dir", USER_DIR, "--task", "unit_mlm", "--arch", "unit_bert_tiny",
            "--criterion", "span_mlm", "--tokens-per-sample", "64", "--optimizer", "adam",
            "--lr", "2e-3", "--max-tokens", "3000", "--cpu", "--seed", "2", "--num-workers", "0",
            *extra]


@pytest.mark.parametrize("flags, message", [
    (["--bf16"], "--bf16 is fairseq's TPU mode .* use --autocast bf16"),
    (["--fp16"], "--fp16 .* is fairseq's CUDA half precision: without a GPU use --autocast bf16"),
    (["--memory-efficient-fp16"], "--fp16 .* is fairseq's CUDA half precision"),
    (["--autocast", "bf16", "--amp"], "--autocast bf16 and --amp both set the precision"),
])
def test_conflicting_precision_flags_are_refused_naming_the_flag_to_use(units, flags, message):
    with pytest.raises(ValueError, match=message):
        build_trainer(bert_args(units, *flags))


@pytest.fixture(scope="module")
def asr_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("asr")
    write_letter_corpus(str(root / "data"))
    return root, *write_upstreams(str(root))


def pretraining(tmp_path, _):
    write_corpus(str(tmp_path / "audio"))
    return [*pretrain_args(tmp_path / "audio", tmp_path / "save", 10), "--user-dir", USER_DIR, "--cpu"]


def unit_mlm(tmp_path, _):
    return bert_args(write_unit_corpus(tmp_path / "units"))


def asr(tmp_path, asr_corpus):
    # BERT features of the units of the vq-wav2vec upstream: all three models run in the forward
    root, vq, bert = asr_corpus
    return [*train_args(root / "data", tmp_path / "save", 10, "--input", "bert", "--upstream",
                        vq, "--bert", bert), "--user-dir", USER_DIR, "--cpu"]


def asr_logmel(tmp_path, asr_corpus):
    root = asr_corpus[0]
    return [*train_args(root / "data", tmp_path / "save", 10, "--input", "logmel"),
            "--user-dir", USER_DIR, "--cpu"]


def pretraining_kmeans(tmp_path, _):
    # the codebook learns from the extra loss only
    return [*pretraining(tmp_path, _), "--vq-type", "kmeans", "--loss-weights", "[1]"]


def pretraining_continuous(tmp_path, _):
    return [*pretraining(tmp_path, _), "--vq-type", "none"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="fairseq's --fp16 itself runs on the GPU")
@pytest.mark.parametrize("training", [pretraining, pretraining_kmeans, pretraining_continuous,
                                      unit_mlm, asr, asr_logmel])
def test_models_run_in_half_precision_as_fairseq_fp16_runs_them(training, tmp_path, request):
    """fairseq's --fp16 (CUDA) halves the model and the float tensors of each batch. Its
    optimizers need a GPU, but the forward and backward are the models' own: here on CPU, no fp32
    tensor meets fp16 weights, and every trained weight gets a finite fp16 gradient."""
    corpus = request.getfixturevalue("asr_corpus") if training in (asr, asr_logmel) else None
    trainer = build_trainer(training(tmp_path, corpus))
    model = trainer.model.half().train()
    sample = apply_to_sample(lambda t: t.half() if t.dtype == torch.float32 else t,
                             next(batches(trainer)))
    loss, _, _ = trainer.criterion(model, sample)
    loss.backward()
    assert math.isfinite(loss.item())
    trained = [p for p in model.parameters() if p.requires_grad]
    assert trained and all(p.dtype == torch.float16 for p in trained)
    assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in trained)


def valid_loss(trainer, sample) -> float:
    """The loss per target of ``sample`` in the task's valid step (unrounded, as the criterion
    returns it), negatives drawn from the same seed."""
    torch.manual_seed(0)
    loss, sample_size, _ = trainer.task.valid_step(sample, trainer.model, trainer.criterion)
    return float(loss) / sample_size


# two trainers and 5 updates: 10-30 s on a busy 2-core machine (the BERT: 3 s)
slow = pytest.mark.slow


@needs_bf16
@pytest.mark.parametrize("training", [pytest.param(pretraining, marks=slow), unit_mlm,
                                      pytest.param(asr, marks=slow)])
def test_training_under_bf16_autocast(training, tmp_path, request):
    corpus = request.getfixturevalue("asr_corpus") if training is asr else None
    argv = training(tmp_path, corpus)
    fp32 = build_trainer(argv)
    bf16 = build_trainer([*argv, "--autocast", "bf16"])  # the same initial weights (seed)
    sample = next(batches(fp32))
    # autocast is on (the loss differs from fp32's) and close
    expected, loss = valid_loss(fp32, sample), valid_loss(bf16, sample)
    assert 0 < abs(loss - expected) <= LOSS_TOLERANCE * abs(expected), (loss, expected)
    print(f"{training.__name__}: valid loss fp32 {expected:.5f}, bf16 {loss:.5f}")

    params = dict(bf16.model.named_parameters())
    before = {name: p.detach().clone() for name, p in params.items()}
    losses = [s["loss"] for s in train(bf16, 4)]
    assert all(math.isfinite(x) for x in losses), losses
    first_fp32 = train(fp32, 1)[0]["loss"]
    assert abs(losses[0] - first_fp32) <= LOSS_TOLERANCE * abs(first_fp32), (losses, first_fp32)
    print(f"{training.__name__}: first update loss fp32 {first_fp32}, bf16 {losses}")
    # master weights: fp32, and every trained one updated
    assert {p.dtype for p in params.values()} == {torch.float32}
    trained = [name for name, p in params.items() if p.requires_grad]
    assert trained and all(not torch.equal(before[name], params[name]) for name in trained)
