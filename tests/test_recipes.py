"""The corpus recipes (examples/{librispeech,wsj,timit}/run.sh) and every registered model preset.

Each recipe is run with DRY_RUN=1, which prints its commands instead of running them; every
fairseq-train / fairseq-generate / fairseq-preprocess line is then parsed by fairseq's own option
parsers (and the training ones converted to fairseq's config, as fairseq-train does), and every
``python -m`` line by its module's parser: a wrong flag, arch, task or criterion fails here
instead of hours into a multi-GPU run. Nothing is trained.

Every preset is built through the fairseq-train path (command line -> arch function -> task ->
model) and its parameters counted: the vq-wav2vec presets against the released checkpoints
(fairseq's README: Gumbel 34.1 M, k-means 33.0 M), the others against hand counts.
"""

import contextlib
import io
import os
import shlex
import subprocess

import pytest
import torch
from fairseq import options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.models import ARCH_MODEL_NAME_REGISTRY

import fairseq_vqw2v  # noqa: F401  registers the tasks, models and criterions
from fairseq_vqw2v.cli import featurize, lm, quantize, score, tune
from manifests import librispeech, timit, wsj

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USER_DIR = os.path.join(ROOT, "fairseq_vqw2v")

MODULE_PARSERS = {
    "manifests.librispeech": lambda argv: librispeech.get_parser().parse_args(argv),
    "manifests.wsj": lambda argv: wsj.get_parser().parse_args(argv),
    "manifests.timit": lambda argv: timit.get_parser().parse_args(argv),
    "fairseq_vqw2v.cli.quantize": quantize.parse_args,
    "fairseq_vqw2v.cli.featurize": featurize.parse_args,
    "fairseq_vqw2v.cli.lm": lambda argv: lm.build_parser().parse_args(argv),
    "fairseq_vqw2v.cli.tune": tune.parse_args,
    # no separate parser: main parses, then fails (status 1) on the results folder, not there yet
    "fairseq_vqw2v.cli.score": score.main,
}


def dry_run(recipe, tmp_path, **env):
    """The recipe's commands (token lists), with every input and output under ``tmp_path``."""
    corpus = tmp_path / "corpus"
    corpus.mkdir(exist_ok=True)  # the prep scripts check that their corpus root exists
    values = dict(os.environ, DRY_RUN="1", WORK=str(tmp_path / recipe), LIBRI=str(tmp_path / "libri"),
                  LIBRISPEECH=str(corpus), WSJ=str(corpus), TIMIT=str(corpus),
                  WSJ_LISTINGS=str(tmp_path / "listings"), LM_TEXT=str(tmp_path / "lm.txt"), **env)
    out = subprocess.run(["bash", os.path.join(ROOT, "examples", recipe, "run.sh")], env=values,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [shlex.split(line) for line in out.stdout.splitlines()]


def tool_and_args(command):
    """(tool, arguments): ``fairseq-*`` (after any launcher such as torchrun or srun) or the
    module of ``python -m``."""
    if command[:2] == ["python", "-m"]:
        return command[2], command[3:]
    for i, token in enumerate(command):
        if os.path.basename(token).startswith("fairseq-"):
            return os.path.basename(token), command[i + 1:]
    raise AssertionError(f"not a fairseq or python -m command: {shlex.join(command)}")


def tools(commands):
    return [tool_and_args(c)[0] for c in commands]


def parse(command):
    """Parses one command as its tool would. Returns (the argument namespace of a fairseq-train
    command or None, argparse's message if the command does not parse or None)."""
    tool, args = tool_and_args(command)
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            if tool == "fairseq-train":
                return options.parse_args_and_arch(options.get_training_parser(), args), None
            if tool == "fairseq-generate":
                options.parse_args_and_arch(options.get_generation_parser(), args)
            elif tool == "fairseq-preprocess":
                options.get_preprocessing_parser().parse_args(args)
            else:
                MODULE_PARSERS[tool](args)
    except SystemExit:
        return None, stderr.getvalue()[-1000:]
    return None, None


@pytest.fixture(scope="module")
def recipes(tmp_path_factory):
    """{name: [(command, fairseq-train namespace or None, error or None)]} for each recipe as run
    on 8 GPUs, and librispeech with the paper's pretraining schedule (``librispeech-paper``).

    Training namespaces are also converted to fairseq's config as fairseq-train does (the typed
    dataclass check), once per task and arch: the conversion takes half a second each."""
    runs = {"librispeech": {}, "wsj": {}, "timit": {}, "librispeech-paper": {"SCHEDULE": "paper"}}
    parsed, converted = {}, set()
    for name, env in runs.items():
        parsed[name] = []
        for command in dry_run(name.split("-")[0], tmp_path_factory.mktemp(name), GPUS="8", **env):
            args, error = parse(command)
            if args is not None and (args.task, args.arch) not in converted:
                converted.add((args.task, args.arch))
                try:
                    convert_namespace_to_omegaconf(args)
                except Exception as e:  # noqa: B902  any failure is the finding
                    error = f"{type(e).__name__}: {e}"
            parsed[name].append((command, args, error))
    return parsed


def trained(recipe_commands):
    """{save dir name: namespace} of the fairseq-train commands."""
    return {os.path.basename(args.save_dir): args for _, args, _ in recipe_commands if args}


@pytest.mark.parametrize("recipe", ["librispeech", "wsj", "timit", "librispeech-paper"])
def test_every_recipe_command_parses(recipe, recipes):
    failures = [f"{shlex.join(c)}\n-> {error}" for c, _, error in recipes[recipe] if error]
    assert not failures, "\n\n".join(failures)
    for command, args, _ in recipes[recipe]:
        assert not any("runs/" in token for token in command), shlex.join(command)  # WORK, LIBRI
        if args is not None:
            assert args.distributed_world_size == 8
    expected = {  # fairseq-train runs per recipe: every stage is there
        "librispeech": 3 + 2 * 2,  # gumbel, kmeans, wav2vec; BERT base and small on both units
        "wsj": 8 + 1,  # 8 acoustic models and the char ConvLM
        "timit": 6,
    }[recipe.split("-")[0]]
    assert sum(args is not None for _, args, _ in recipes[recipe]) == expected


@pytest.mark.parametrize("launcher, first", [("torchrun", "torchrun"), ("slurm", "srun")])
def test_multi_node_launchers(launcher, first, tmp_path):
    commands = [c for c in dry_run("timit", tmp_path, LAUNCHER=launcher, NODES="2", GPUS="8", SYSTEMS="logmel")
                if "fairseq-train" in " ".join(c)]
    assert len(commands) == 1 and commands[0][0] == first
    args, error = parse(commands[0])
    assert error is None, error
    assert args.distributed_world_size == 16
    assert args.batch_size == 1  # the paper's 16 utterances per update over 16 GPUs


def test_recipe_hyperparameters(recipes):
    """The values that the READMEs attribute to the paper or to fairseq's README."""
    runs = trained(recipes["librispeech"])
    gumbel = runs["gumbel"]
    assert gumbel.arch == "vq_wav2vec_gumbel" and gumbel.prediction_steps == 12
    assert gumbel.lr == [1e-05] and gumbel.warmup_updates == 1000
    # fairseq's README trained on 16 GPUs x 300 k samples: 8 GPUs accumulate 2 batches
    assert gumbel.max_tokens == 300000 and gumbel.update_freq == [2]
    assert gumbel.max_update == 400000 and gumbel.max_sample_size == 150000
    assert runs["kmeans"].arch == "vq_wav2vec_kmeans" and runs["kmeans"].loss_weights == [1.0]
    assert runs["wav2vec"].vq_type == "none"
    for name in ("kmeans-base", "gumbel-small"):
        bert = runs[name]
        assert (bert.mask_prob, bert.mask_length, bert.mask_semantics) == (0.05, 10, "paper")
        # 128 GPUs x 3072 tokens, 250 k updates, 10 k warm-up
        assert bert.max_tokens * bert.update_freq[0] * 8 == 128 * 3072
        assert bert.max_update == 250000 and bert.warmup_updates == 10000

    paper = trained(recipes["librispeech-paper"])["gumbel"]
    assert paper.lr == [5e-03] and paper.prediction_steps == 8
    assert paper.warmup_updates == 500 and paper.temp_schedule == "linear"
    assert paper.max_tokens == 1500000 and paper.update_freq == [1]

    wsj_runs = trained(recipes["wsj"])
    am = wsj_runs["gumbel-bert-base"]
    assert am.arch == "w2l_ctc_wsj" and am.batch_size * 8 == 64 and am.labels == "ltr"
    assert am.input == "bert" and am.features.endswith("features/gumbel-bert-base")
    charlm = wsj_runs["ckpt"]
    assert charlm.sample_break_mode == "eos" and charlm.arch == "fconv_lm"
    timit_am = trained(recipes["timit"])["kmeans"]
    assert timit_am.arch == "w2l_ctc_timit" and timit_am.labels == "phn"
    assert timit_am.input == "units" and timit_am.batch_size * 8 == 16


def test_multi_node_needs_a_launcher(tmp_path):
    out = subprocess.run(["bash", os.path.join(ROOT, "examples", "timit", "run.sh"), "am"],
                         env=dict(os.environ, DRY_RUN="1", NODES="2", WORK=str(tmp_path)),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "use torchrun or slurm" in out.stderr


def test_stages_can_be_run_alone(tmp_path):
    out = subprocess.run(["bash", os.path.join(ROOT, "examples", "wsj", "run.sh"), "lm"],
                         env=dict(os.environ, DRY_RUN="1", WORK=str(tmp_path), LM_TEXT="lm.txt"),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert tools(shlex.split(line) for line in out.stdout.splitlines()) == [
        "fairseq_vqw2v.cli.lm", "fairseq_vqw2v.cli.lm", "fairseq_vqw2v.cli.lm",
        "fairseq-preprocess", "fairseq-train"]


# --- parameter counts of every registered preset, built as fairseq-train builds them ---

def unit_bert_params(vocab, layers, dim, ffn, positions=512, padding_idx=1):
    """Hand count of fairseq's roberta / our unit_bert: token and position embeddings (positions
    start after the padding index), embedding LayerNorm, per layer fused q/k/v + output
    projections, two LayerNorms and the FFN, then the LM head (dense, LayerNorm, output bias;
    its weight is tied to the token embeddings)."""
    embeddings = vocab * dim + (positions + padding_idx + 1) * dim + 2 * dim
    layer = 4 * dim * dim + 4 * dim + 2 * dim * ffn + ffn + dim + 4 * dim
    head = dim * dim + dim + 2 * dim + vocab
    return embeddings + layers * layer + head


# 123.6 M (fairseq's README, the released RoBERTa on k-means units) with unit_bert_base's 12 x 768
# and 512 positions holds for 48,774-48,903 embedding rows (769 params a row on 86.04 M):
# 48,769-48,898 units + 4 specials + <mask>. The paper's 23 k distinct k-means units would
# give 103.7 M, so the released dictionary held about twice as many unit pairs.
RELEASED_BERT_UNITS = 48_835
WSJ_LETTERS = list("abcdefghijklmnopqrstuvwxyz'|")  # 28 + 4 specials = 32 labels
TIMIT_PHONES = [f"p{i}" for i in range(39)]  # 39 folded phones + 4 specials = 43 labels

# W2lConvStack on 80-dim log-mel (hand-counted in tests/test_w2l_conv.py) + the output layer
W2L_WSJ = 17_135_500 + 2 * 7_050 + 500 * 32 + 32
W2L_TIMIT = 400_000 + 30_000_000 + 7_000 + 7 + 1000 * 43 + 43
# tiny: GLU convs (conv channels 384, 384, 384, 512) of kernels 7, 7, 7, 1, then 256 -> 32
W2L_TINY = (80 * 384 * 7 + 384) + 2 * (192 * 384 * 7 + 384) + (192 * 512 + 512) + 256 * 32 + 32

EXPECTED = {
    # released checkpoints, to 0.1 M (fairseq's examples/wav2vec/README.md)
    "vq_wav2vec_gumbel": ("M1", 34.1),
    "vq_wav2vec_kmeans": ("M1", 33.0),
    # ours (top-level README's table), to 0.01 M
    "vq_wav2vec_small": ("M2", 15.18),
    "vq_wav2vec_tiny": ("M2", 0.96),  # depth-1 Gumbel logits (the README's 1.07 M is depth 2)
    "unit_bert_base": ("exact", unit_bert_params(RELEASED_BERT_UNITS + 5, 12, 768, 3072)),
    "unit_bert_large": ("exact", unit_bert_params(RELEASED_BERT_UNITS + 5, 24, 1024, 4096)),
    "unit_bert_small": ("exact", unit_bert_params(RELEASED_BERT_UNITS + 5, 12, 512, 2048)),
    "unit_bert_tiny": ("exact", unit_bert_params(RELEASED_BERT_UNITS + 5, 2, 128, 512, positions=256)),
    "w2l_ctc_wsj": ("exact", W2L_WSJ),
    "w2l_ctc_timit": ("exact", W2L_TIMIT),
    "w2l_ctc_tiny": ("exact", W2L_TINY),
}
FAMILIES = {"vq_wav2vec": "vqw2v_pretraining", "unit_bert": "unit_mlm", "w2l_ctc": "vqw2v_asr"}


@pytest.fixture(scope="module")
def task_data(tmp_path_factory):
    """Data folders the tasks set up from: a units dictionary and letter / phone dictionaries."""
    root = tmp_path_factory.mktemp("presets")
    with open(root / "dict.txt", "w") as f:
        f.writelines(f"{i // 320}-{i % 320} 1\n" for i in range(RELEASED_BERT_UNITS))
    for labels, symbols in (("ltr", WSJ_LETTERS), ("phn", TIMIT_PHONES)):
        (root / labels).mkdir()
        (root / labels / f"dict.{labels}.txt").write_text("".join(f"{s} 1\n" for s in symbols))
    return root


def build(arch, task_data):
    family = ARCH_MODEL_NAME_REGISTRY[arch]
    data = task_data
    args = [str(data), "--user-dir", USER_DIR, "--task", FAMILIES[family], "--arch", arch]
    if family == "w2l_ctc":
        labels = "phn" if arch == "w2l_ctc_timit" else "ltr"
        args[0] = str(data / labels)
        args += ["--labels", labels, "--input", "logmel", "--criterion", "ctc_asr"]
    cfg = convert_namespace_to_omegaconf(
        options.parse_args_and_arch(options.get_training_parser(), args))
    task = tasks.setup_task(cfg.task)
    with torch.device("meta"):  # shapes only: no memory, no initialisation time
        return task.build_model(cfg.model)


def test_expected_counts_cover_every_registered_preset():
    # register_model also registers the model's own name as an arch: its config defaults, no preset
    ours = {arch for arch, model in ARCH_MODEL_NAME_REGISTRY.items() if model in FAMILIES and arch != model}
    assert ours == set(EXPECTED)


@pytest.mark.parametrize("arch", sorted(EXPECTED))
def test_preset_parameter_count(arch, task_data):
    params = sum(p.numel() for p in build(arch, task_data).parameters())
    kind, expected = EXPECTED[arch]
    print(f"{arch}: {params:,} parameters")
    if kind == "exact":
        assert params == expected
    else:
        assert round(params / 1e6, 1 if kind == "M1" else 2) == expected


def test_released_bert_size_pins_the_vocabulary():
    """The vocabulary range quoted above: 123.6 M exactly at its ends, not beyond."""
    def millions(units):
        return round(unit_bert_params(units + 5, 12, 768, 3072) / 1e6, 1)

    assert millions(48_769) == millions(48_898) == 123.6
    assert millions(48_768) == 123.5 and millions(48_899) == 123.7
    assert millions(23_000) == 103.7
