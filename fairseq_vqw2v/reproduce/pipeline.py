"""The paper's experiments as stages: presets and the stage graph.

Stages (``group/detail``; each writes ``OUT/group/detail/``):

- ``corpus`` (embedded corpus only): ``python -m manifests.synth``;
- ``pretrain/{wav2vec,gumbel,kmeans}``: fairseq-train ``vqw2v_pretraining`` (``--vq-type``);
- ``units/{gumbel,kmeans}``: the quantize CLI with ``--report`` (usage, PNMI, log-mel baseline);
  ``units/logmel_kmeans``: k-means on log-mel frames (``reproduce.logmel_units``), as many
  clusters as the Gumbel units use on train;
- ``bert/{gumbel,kmeans,logmel_kmeans}``: fairseq-train ``unit_mlm``;
- ``features/{wav2vec,gumbel,kmeans,logmel_kmeans}``: the featurize CLI (the continuous
  model's ``c``, and frozen BERT features of each unit inventory, cached once for every acoustic
  model that reads them);
- ``am/{ltr,phn}/{system}``: fairseq-train ``vqw2v_asr`` for every system of :data:`SYSTEMS`
  (from scratch again with another seed while it ends on CTC's all-blank plateau:
  :func:`am_restart`);
- ``lm/4gram``: the lm CLI (KenLM word 4-gram + lexicon from the corpus's LM text);
  ``lm/charlm``: charlm-data, fairseq-preprocess and stock fairseq-train ``language_modeling``;
- ``decode/{ltr,phn}/{system}``: fairseq-generate of valid and test, greedy; letters also with
  the 4-gram (LM weight and word score tuned on valid by the tune CLI);
  ``decode/ltr/{CHARLM_SYSTEM}_charlm``: the char ConvLM on the paper's best row.
"""

import dataclasses
import os
from dataclasses import dataclass
from typing import Dict, List, Sequence

from ..constants import EVAL_SPLITS, PRETRAIN_SPLIT, SPLITS
from ..data.feature_files import lengths_path
from ..data.labels import LABEL_KINDS, error_metric
from ..data.unit_files import unit_dict_path, usage_path
from ..decoding.lm_build import CHAR_DICT, CHAR_TEXT, LEXICON, NGRAM_BINARY
from ..decoding.scoring import PLATEAU_OUTPUT_RATIO, below_plateau_bound
from .stages import Command, Restart, Stage

QUANTIZERS = ("gumbel", "kmeans")
LOGMEL_UNITS = "logmel_kmeans"
CHARLM_SYSTEM = "gumbel_bert"
"""The paper's best row (Table 1: Gumbel + BERT base with the char ConvLM)."""

SYSTEMS = {
    "logmel": "log-mel filterbanks",
    "wav2vec": "continuous wav2vec",
    "gumbel": "vq-wav2vec Gumbel units",
    "gumbel_bert": "BERT on Gumbel units",
    "kmeans": "vq-wav2vec k-means units",
    "kmeans_bert": "BERT on k-means units",
    "logmel_kmeans": "log-mel k-means units",
    "logmel_kmeans_bert": "BERT on log-mel k-means units",
}
"""Acoustic-model inputs: the rows of the paper's tables, and the log-mel baseline units with and
without a BERT (every BERT row beside the units it reads)."""

DEMO_SYSTEMS = ("logmel", "wav2vec", "gumbel", "gumbel_bert")
"""The rows ``make demo`` runs: the paper's letters table (Table 1) without the k-means rows."""


def demo_stages(seeds: Sequence[int] = (1,)) -> List[str]:
    """Stage names that, with what they need, make the demo's letters table (for each seed)."""
    prefixes = [chain_name(seed, seeds[0]) for seed in seeds]
    return [f"{p}/decode/ltr/{s}" if p else f"decode/ltr/{s}" for p in prefixes for s in DEMO_SYSTEMS]


def every_am(lr: str) -> Dict[str, str]:
    """``lr`` for every acoustic model (``labels/system``)."""
    return {f"{labels}/{system}": lr for labels in LABEL_KINDS for system in SYSTEMS}


@dataclass(frozen=True)
class Preset:
    """Sizes and hyperparameters of one reproduction (see :data:`PRESETS`)."""

    name: str
    description: str
    device: str
    corpus_hours: float
    pretrain_arch: Dict[str, str]
    pretrain_updates: int
    pretrain_flags: List[str]
    bert_arch: Dict[str, str]
    bert_updates: int
    bert_flags: List[str]
    am_arch: Dict[str, str]
    am_updates: int
    am_flags: List[str]
    am_lr: Dict[str, str]
    """Each acoustic model's learning rate, by ``labels/system`` (``ltr/gumbel``)."""
    am_validations: int
    """Validations per acoustic-model training: the points of the valid-error curves."""
    featurize_flags: List[str]
    """Flags of every BERT featurize command (which layers are cached)."""
    beam: int
    lm_weights: str
    word_scores: str
    charlm_flags: List[str]
    charlm_updates: int
    charlm_beam: int
    charlm_lm_weights: str
    charlm_word_scores: str
    log_interval: int
    save_interval_updates: int
    """Updates between checkpoints of pretraining, BERT and the char LM (acoustic models save at
    each validation)."""
    num_workers: int = 0
    decode_batch_size: int = 16
    lm_flags: List[str] = dataclasses.field(default_factory=list)
    """Extra flags of the lm CLI (``--discount-fallback`` for a tiny LM text)."""
    corpus_lm_words: int = 0
    """Words of LM text the embedded corpus writes (0: all of its sources, about 2.4 M)."""
    unlabeled_hours: float = 0.0
    """Hours of unlabeled audio the embedded corpus adds for pretraining and the BERTs (its
    ``pretrain`` split: train's audio and these hours); the acoustic models still train on train."""
    am_runs: int = 3
    """Runs in all of an acoustic model whose training ends on CTC's all-blank plateau: each
    run after the first trains from scratch with another seed (1: never again)."""

    def settings(self) -> Dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "description"}


EMBEDDED = Preset(
    name="embedded",
    description="the embedded corpus on CPU: tiny archs, sized so every row fits 90 min on 2 cores",
    device="cpu",
    corpus_hours=1.0,
    pretrain_arch={q: "vq_wav2vec_tiny" for q in ("wav2vec",) + QUANTIZERS},
    pretrain_updates=1200,
    # A CPU deviation from the paper, chosen by measurement (docs/reproducing.md, "Unit quality"): InfoNCE
    # (binary cross-entropy settles at its base-rate floor within a few hundred updates), and many
    # small updates at a high learning rate (2 s crops, 8 s of audio per update, lr 1e-2) rather
    # than the paper's few large ones: for the same audio seen, test PNMI of the Gumbel units
    # went from 0.285 (400 updates of 25 s, lr 1e-3) to 0.354.
    pretrain_flags=[
        "--infonce", "--temp-schedule", "linear", "--max-sample-size", "32000",
        "--min-sample-size", "8000", "--max-tokens", "128000",
        "--skip-invalid-size-inputs-valid-test", "--optimizer", "adam", "--lr", "1e-2",
        "--lr-scheduler", "cosine", "--warmup-updates", "60", "--warmup-init-lr", "1e-7",
        "--min-lr", "1e-6", "--collapse-warn-after", "600", "--collapse-warn-interval", "300",
    ],
    bert_arch={u: "unit_bert_tiny" for u in QUANTIZERS + (LOGMEL_UNITS,)},
    bert_updates=300,
    bert_flags=[
        "--tokens-per-sample", "256", "--max-tokens", "8192", "--optimizer", "adam",
        "--adam-betas", "(0.9, 0.98)", "--lr", "1e-3", "--lr-scheduler", "polynomial_decay",
        "--warmup-updates", "30",
    ],
    am_arch={"ltr": "w2l_ctc_tiny", "phn": "w2l_ctc_tiny"},
    am_updates=400,
    # 120 s of audio per update: the demo's four acoustic models then fit its 30 minutes
    am_flags=[
        "--max-tokens", "12000", "--optimizer", "adam", "--lr-scheduler", "cosine",
        "--warmup-updates", "50", "--warmup-init-lr", "1e-7", "--min-lr", "1e-5",
    ],
    # searched for every row and label kind alike on the seed-1 chain (2e-3, 4e-3 and 8e-3,
    # doubled further while the largest rate was the best), the lowest valid error kept
    # (docs/reproducing.md, "The acoustic models' learning rate")
    am_lr={"ltr/logmel": "8e-3", "ltr/wav2vec": "4e-3", "ltr/gumbel": "8e-3",
           "ltr/gumbel_bert": "4e-3", "ltr/kmeans": "8e-3", "ltr/kmeans_bert": "4e-3",
           "ltr/logmel_kmeans": "4e-3", "ltr/logmel_kmeans_bert": "8e-3",
           "phn/logmel": "8e-3", "phn/wav2vec": "4e-3", "phn/gumbel": "8e-3",
           "phn/gumbel_bert": "8e-3", "phn/kmeans": "4e-3", "phn/kmeans_bert": "8e-3",
           "phn/logmel_kmeans": "8e-3", "phn/logmel_kmeans_bert": "8e-3"},
    am_validations=8,
    # every BERT layer (the embeddings' output included), weighted by the acoustic model as in
    # s3prl's featurizer; on the demo's units the final layer or the embeddings' output alone is
    # level with it within one seed's noise (docs/reproducing.md, "Levers for the BERT rows")
    featurize_flags=["--layers", "all"],
    beam=50,
    lm_weights="0.5,1,2,3",
    word_scores="-1,0,1",
    charlm_flags=[
        "--arch", "fconv_lm", "--decoder-layers", "[(128, 3)] * 4", "--decoder-embed-dim", "64",
        "--decoder-out-embed-dim", "64", "--tokens-per-sample", "256", "--max-tokens", "4096",
        "--optimizer", "adam", "--lr", "1e-3",
    ],
    charlm_updates=400,
    charlm_beam=20,
    charlm_lm_weights="0.5,1",
    charlm_word_scores="0",
    log_interval=25,
    save_interval_updates=100,
)

PAPER = Preset(
    name="paper",
    description="the paper's model sizes and schedules (GPU; days on 8 GPUs for pretraining)",
    device="cuda",
    corpus_hours=1.0,
    # wav2vec row: the same large model without a quantizer
    pretrain_arch={"wav2vec": "vq_wav2vec_gumbel", "gumbel": "vq_wav2vec_gumbel",
                   "kmeans": "vq_wav2vec_kmeans"},
    pretrain_updates=400_000,
    # the paper: crops of 150,000 samples, warm-up 500 from 1e-7 to 5e-3, cosine to 1e-6
    pretrain_flags=[
        "--max-sample-size", "150000", "--max-tokens", "1500000",
        "--skip-invalid-size-inputs-valid-test", "--optimizer", "adam", "--lr", "5e-3",
        "--lr-scheduler", "cosine", "--warmup-updates", "500", "--warmup-init-lr", "1e-7",
        "--min-lr", "1e-6",
    ],
    # Table 1: BERT base on Gumbel units; Table 3 compares the quantizers with BERT small
    bert_arch={"gumbel": "unit_bert_base", "kmeans": "unit_bert_small",
               LOGMEL_UNITS: "unit_bert_small"},
    bert_updates=250_000,
    bert_flags=[
        "--tokens-per-sample", "512", "--max-tokens", "8192", "--optimizer", "adam",
        "--adam-betas", "(0.9, 0.98)", "--lr", "5e-4", "--lr-scheduler", "polynomial_decay",
        "--warmup-updates", "10000",
    ],
    am_arch={"ltr": "w2l_ctc_wsj", "phn": "w2l_ctc_timit"},
    am_updates=100_000,
    am_flags=[
        "--max-tokens", "20000", "--optimizer", "adam", "--lr-scheduler", "cosine",
        "--warmup-updates", "1000", "--warmup-init-lr", "1e-7", "--min-lr", "1e-6",
    ],
    am_lr=every_am("1e-3"),
    am_validations=20,
    featurize_flags=[],  # the paper read BERT's final layer
    beam=50,
    lm_weights="0,0.5,1,1.5,2,3,4",
    word_scores="-2,-1,0,1",
    charlm_flags=[
        "--arch", "fconv_lm", "--tokens-per-sample", "1024", "--max-tokens", "32768",
        "--optimizer", "nag", "--lr", "0.5", "--clip-norm", "0.1",
    ],
    charlm_updates=100_000,
    charlm_beam=50,
    charlm_lm_weights="0.5,1,1.5,2",
    charlm_word_scores="-1,0,1",
    log_interval=200,
    save_interval_updates=2000,
    num_workers=6,
)

PRESETS = {p.name: p for p in (EMBEDDED, PAPER)}


@dataclass
class Layout:
    """Where things are: the output root, the corpus (manifests + labels), the LM text.

    ``seed`` seeds every training of one chain (pretraining -> units -> BERT -> features ->
    acoustic models -> decoding); the corpus and the LMs, which no chain trains, are shared by
    all chains. The first chain's stages are named and stored as ever (``pretrain/gumbel`` in
    ``OUT/pretrain/gumbel``); another seed's chain is ``seed{s}/pretrain/gumbel`` in
    ``OUT/seed{s}/pretrain/gumbel`` (:func:`build_seed_stages`).
    """

    out: str
    corpus: str
    lm_text: str
    user_dir: str
    labels: Sequence[str] = LABEL_KINDS
    embedded: bool = True
    seed: int = 1
    chain: str = ""
    """Subfolder and stage-name prefix of this seed's chain ("" for the first seed)."""

    def path(self, *parts: str) -> str:
        """A shared output (the corpus, the LMs)."""
        return os.path.join(self.out, *parts)

    def chain_path(self, *parts: str) -> str:
        """An output of this seed's chain."""
        return os.path.join(self.out, self.chain, *parts)

    def name(self, stage: str) -> str:
        """The name of this seed's stage ``stage``."""
        return f"{self.chain}/{stage}" if self.chain else stage


_OTHER_CHAIN = "seed"
"""How the chain prefix of every seed but the first begins (``seed2``)."""


def chain_name(seed: int, first_seed: int) -> str:
    """The chain prefix of ``seed`` when ``first_seed`` is the run's first seed."""
    return "" if seed == first_seed else f"{_OTHER_CHAIN}{seed}"


def names_other_chain(name: str) -> bool:
    """Whether a stage name (or a glob of them) starts with another seed's chain prefix
    (:func:`chain_name`), as ``seed3/am/phn/*`` does."""
    return name.startswith(_OTHER_CHAIN)


def _fairseq_common(layout: Layout, preset: Preset, save_dir: str, updates: int,
                    save_interval: int) -> List[str]:
    """Flags every fairseq-train run shares: plugin, seed, device, schedule, json logs, checkpoints
    (every ``save_interval`` updates)."""
    return [
        "--user-dir", layout.user_dir, "--seed", str(layout.seed),
        *(["--cpu"] if preset.device == "cpu" else []),
        "--num-workers", str(preset.num_workers), "--max-update", str(updates),
        "--save-dir", save_dir, "--no-epoch-checkpoints", "--save-interval", "1000000",
        "--save-interval-updates", str(save_interval),
        "--keep-interval-updates", "1", "--log-format", "json",
        "--log-interval", str(preset.log_interval),
    ]


def _validation_interval(updates: int, times: int = 4) -> int:
    """Updates between validations, for ``times`` validations per run."""
    return max(1, updates // times)


def _train_stage(name, layout, preset, data, updates, flags, validate_every, save_every,
                 inputs=(), after=(), restart=None) -> Stage:
    """A fairseq-train stage of this seed's chain (``name`` and ``inputs`` without the prefix),
    validating every ``validate_every`` updates (on update counts: epochs of tiny corpora are
    short) and saving every ``save_every``; ``restart``: see :class:`~.stages.Restart`."""
    save = layout.chain_path(name)
    validation = ["--validate-interval", "1000000",
                  "--validate-interval-updates", str(validate_every)]
    argv = ["fairseq-train", data, *flags, *validation,
            *_fairseq_common(layout, preset, save, updates, save_every)]
    last = os.path.join(save, "checkpoint_last.pt")
    return Stage(layout.name(name), save, [Command(argv, trains=(last, updates), restart=restart)],
                 [last], inputs=list(inputs), after=list(after))


AM_RESEED_STEP = 100
"""An acoustic model's run ``k`` (0 first) trains with its chain's seed plus ``k`` times this:
far from the chains' own seeds, so no run repeats another chain's."""


def _on_plateau(valid: Dict) -> bool:
    """Whether a validation's greedy output per reference unit (the ``ctc_asr`` criterion logs it
    as ``output_ratio``) is below the plateau bound: the training never left CTC's all-blank
    plateau."""
    ratio = valid.get("valid_output_ratio")
    return ratio is not None and below_plateau_bound(float(ratio))


def am_restart(preset: Preset) -> Restart:
    """How an acoustic model that ends on CTC's all-blank plateau trains again: a run that did
    not start measures the seed's luck, not the input (docs/reproducing.md, "The seed-3 phone
    models on the all-blank plateau"), and every row gets the same number of runs."""
    return Restart(preset.am_runs, AM_RESEED_STEP, _on_plateau,
                   f"on CTC's all-blank plateau at the last validation (greedy output below "
                   f"{PLATEAU_OUTPUT_RATIO:g} units per reference unit)")


def build_stages(layout: Layout, preset: Preset) -> List[Stage]:
    """Every stage of one seed's reproduction, inputs before the stages that read them; the
    shared stages (corpus, LMs) only in the first seed's (``layout.chain == ""``)."""
    stages: List[Stage] = []
    corpus, device = layout.corpus, preset.device
    first = not layout.chain
    P, N = layout.chain_path, layout.name  # this chain's paths and stage names
    corpus_inputs = ["corpus"] if layout.embedded else []
    # the self-supervised stages' train split, and the flags that select it (none for train, so
    # that runs without unlabeled audio keep their commands and hashes)
    unlabeled = preset.unlabeled_hours > 0
    if unlabeled and not layout.embedded:
        raise ValueError("unlabeled_hours adds audio to the embedded corpus; with --manifest-dir, "
                         "train pretraining and the BERTs on a split of their own with fairseq's "
                         "--train-subset (docs/pipeline.md, Manifests)")
    ssl_split = PRETRAIN_SPLIT if unlabeled else "train"
    ssl_subset = ["--train-subset", ssl_split] if unlabeled else []
    unit_splits = ((PRETRAIN_SPLIT,) if unlabeled else ()) + SPLITS
    if layout.embedded and first:
        stages.append(Stage(
            "corpus", corpus,
            [Command(["python", "-m", "manifests.synth", "--out", corpus, "--hours",
                      str(preset.corpus_hours), "--seed", str(layout.seed),
                      "--lm-words", str(preset.corpus_lm_words),
                      *(["--unlabeled-hours", str(preset.unlabeled_hours)] if unlabeled else [])])],
            [os.path.join(corpus, "corpus.json")],
        ))

    # 1. pretraining, one run per quantizer (the critical path first: units and BERT wait on it)
    for q in QUANTIZERS + ("wav2vec",):
        vq_type = "none" if q == "wav2vec" else q
        stages.append(_train_stage(
            f"pretrain/{q}", layout, preset, corpus, preset.pretrain_updates,
            ["--task", "vqw2v_pretraining", "--arch", preset.pretrain_arch[q], "--vq-type", vq_type,
             "--criterion", "vqw2v_contrastive", *preset.pretrain_flags, *ssl_subset],
            _validation_interval(preset.pretrain_updates), preset.save_interval_updates,
            inputs=corpus_inputs,
        ))

    # 2. units of every split with both quantizers, and the log-mel k-means baseline units
    for q in QUANTIZERS:
        dest = P("units", q)
        stages.append(Stage(
            N(f"units/{q}"), dest,
            [Command(["python", "-m", "fairseq_vqw2v.cli.quantize", "--checkpoint",
                      P("pretrain", q, "checkpoint_last.pt"), "--manifest-dir", corpus,
                      "--splits", ",".join(unit_splits), "--dest", dest, "--device", device,
                      "--report"])],
            [unit_dict_path(dest)] + [usage_path(dest, s) for s in SPLITS],
            inputs=[N(f"pretrain/{q}")],
        ))
    dest = P("units", LOGMEL_UNITS)
    stages.append(Stage(
        N(f"units/{LOGMEL_UNITS}"), dest,
        [Command(["python", "-m", "fairseq_vqw2v.reproduce.logmel_units", "--manifest-dir", corpus,
                  "--splits", ",".join(unit_splits), "--dest", dest, "--seed", str(layout.seed),
                  "--clusters-like", usage_path(P("units", "gumbel"), "train"),
                  *(["--fit-split", ssl_split] if unlabeled else [])])],
        [unit_dict_path(dest)] + [usage_path(dest, s) for s in SPLITS],
        inputs=[N("units/gumbel")],
    ))

    # 3. a BERT on each unit inventory, and cached features for the two quantizers
    for u in QUANTIZERS + (LOGMEL_UNITS,):
        stages.append(_train_stage(
            f"bert/{u}", layout, preset, P("units", u), preset.bert_updates,
            ["--task", "unit_mlm", "--arch", preset.bert_arch[u], "--criterion", "span_mlm",
             *preset.bert_flags, "--total-num-update", str(preset.bert_updates), *ssl_subset],
            _validation_interval(preset.bert_updates), preset.save_interval_updates,
            inputs=[N(f"units/{u}")],
        ))
    # cached acoustic-model inputs: wav2vec's c, and BERT features of each unit inventory
    sources = {
        "wav2vec": (["--vq-checkpoint", P("pretrain", "wav2vec", "checkpoint_last.pt")],
                    [N("pretrain/wav2vec")]),
        **{q: (["--vq-checkpoint", P("pretrain", q, "checkpoint_last.pt"),
                "--bert-checkpoint", P("bert", q, "checkpoint_last.pt"), *preset.featurize_flags],
               [N(f"pretrain/{q}"), N(f"bert/{q}")]) for q in QUANTIZERS},
        LOGMEL_UNITS: (["--units-dir", P("units", LOGMEL_UNITS), "--bert-checkpoint",
                        P("bert", LOGMEL_UNITS, "checkpoint_last.pt"), *preset.featurize_flags],
                       [N(f"units/{LOGMEL_UNITS}"), N(f"bert/{LOGMEL_UNITS}")]),
    }
    for name, (flags, inputs) in sources.items():
        dest = P("features", name)
        stages.append(Stage(
            N(f"features/{name}"), dest,
            [Command(["python", "-m", "fairseq_vqw2v.cli.featurize", *flags, "--manifest-dir",
                      corpus, "--split", s, "--dest", dest, "--device", device],
                     creates=lengths_path(dest, s)) for s in SPLITS],
            [lengths_path(dest, s) for s in SPLITS],
            inputs=inputs,
        ))

    # 4. acoustic models; the first of each label kind writes the corpus's label dictionary
    #    when it lacks one, so the others (and the other seeds' chains) wait for it
    def cached(name):
        return ["--features", P("features", name)], [N(f"features/{name}")]

    system_inputs = {
        "logmel": ([], corpus_inputs),
        "wav2vec": cached("wav2vec"),
        "gumbel": (["--units-dir", P("units", "gumbel")], [N("units/gumbel")]),
        "gumbel_bert": cached("gumbel"),
        "kmeans": (["--units-dir", P("units", "kmeans")], [N("units/kmeans")]),
        "kmeans_bert": cached("kmeans"),
        LOGMEL_UNITS: (["--units-dir", P("units", LOGMEL_UNITS)], [N(f"units/{LOGMEL_UNITS}")]),
        "logmel_kmeans_bert": cached(LOGMEL_UNITS),
    }
    kinds = {"logmel": "logmel", "wav2vec": "wav2vec", "gumbel": "units", "kmeans": "units",
             LOGMEL_UNITS: "units"}
    # fairseq moves checkpoint_best.pt only when it saves: a save at every validation makes the
    # decoded checkpoint the best of all of them, as the curves show
    am_every = _validation_interval(preset.am_updates, preset.am_validations)
    for labels in layout.labels:
        # letters: the best checkpoint by LER, not WER. While a model cannot spell yet, its WER
        # exceeds 100 (inserted words) and the all-blank model of the first updates (WER 100)
        # would win; LER falls from the first letters it gets right.
        metric = error_metric(labels)
        for system, (flags, inputs) in system_inputs.items():
            writes_dict = system == "logmel" and first
            stages.append(_train_stage(
                f"am/{labels}/{system}", layout, preset, corpus, preset.am_updates,
                ["--task", "vqw2v_asr", "--labels", labels, "--input", kinds.get(system, "bert"),
                 *flags, "--arch", preset.am_arch[labels], "--criterion", "ctc_asr",
                 *preset.am_flags, "--lr", str(preset.am_lr[f"{labels}/{system}"]),
                 "--best-checkpoint-metric", metric],
                am_every, am_every,
                inputs=corpus_inputs + inputs,
                after=[] if writes_dict else [f"am/{labels}/logmel"],
                restart=am_restart(preset) if preset.am_runs > 1 else None,
            ))

    # 5. language models from the corpus's LM text (shared by every seed's chain)
    lm_dir = layout.path("lm", "4gram")
    letter_dict = os.path.join(corpus, "dict.ltr.txt")
    has_letters = "ltr" in layout.labels
    if has_letters and first:
        stages.append(Stage(
            "lm/4gram", lm_dir,
            [Command(["python", "-m", "fairseq_vqw2v.cli.lm", "ngram", layout.lm_text, lm_dir,
                      "--order", "4", "--letter-dict", letter_dict, *preset.lm_flags])],
            [os.path.join(lm_dir, NGRAM_BINARY), os.path.join(lm_dir, LEXICON)],
            inputs=corpus_inputs, after=["am/ltr/logmel"],  # which writes dict.ltr.txt if missing
        ))
        charlm_dir = layout.path("lm", "charlm")
        ckpt = os.path.join(charlm_dir, "ckpt")
        stages.append(Stage(
            "lm/charlm", charlm_dir,
            [Command(["python", "-m", "fairseq_vqw2v.cli.lm", "charlm-data", layout.lm_text,
                      charlm_dir], creates=os.path.join(charlm_dir, CHAR_DICT)),
             Command(["fairseq-preprocess", "--only-source", "--trainpref",
                      os.path.join(charlm_dir, CHAR_TEXT), "--srcdict",
                      os.path.join(charlm_dir, CHAR_DICT), "--destdir",
                      os.path.join(charlm_dir, "bin"), "--workers", "1"],
                     creates=os.path.join(charlm_dir, "bin", "train.idx")),
             Command(["fairseq-train", os.path.join(charlm_dir, "bin"), "--task", "language_modeling",
                      *preset.charlm_flags, "--sample-break-mode", "eos", "--disable-validation",
                      *_fairseq_common(layout, preset, ckpt, preset.charlm_updates,
                                       preset.save_interval_updates)],
                     trains=(os.path.join(ckpt, "checkpoint_last.pt"), preset.charlm_updates))],
            [os.path.join(ckpt, "checkpoint_last.pt")],
            inputs=corpus_inputs,
        ))

    # 6. decoding valid and test: greedy, and with the 4-gram tuned on valid
    kenlm_flags = ["--lexicon", os.path.join(lm_dir, LEXICON),
                   "--decoder-lm", os.path.join(lm_dir, NGRAM_BINARY), "--beam", str(preset.beam)]
    for labels in layout.labels:
        for system in system_inputs:
            am = P("am", labels, system, "checkpoint_best.pt")
            dest = P("decode", labels, system)
            commands = [_generate(layout, preset, am, labels, split, "viterbi", dest) for split in EVAL_SPLITS]
            inputs = [N(f"am/{labels}/{system}")]
            if labels == "ltr":
                tuned = os.path.join(dest, "kenlm.tuned.json")
                commands.append(_tune(corpus, am, "kenlm", kenlm_flags, preset.lm_weights,
                                      preset.word_scores, tuned))
                commands += [_generate(layout, preset, am, labels, split, "kenlm", dest, *kenlm_flags,
                                       "--decoder-settings", tuned) for split in EVAL_SPLITS]
                inputs.append("lm/4gram")
            stages.append(Stage(N(f"decode/{labels}/{system}"), dest, commands,
                                [c.creates for c in commands], inputs=inputs))
    if has_letters:
        am = P("am", "ltr", CHARLM_SYSTEM, "checkpoint_best.pt")
        dest = P("decode", "ltr", f"{CHARLM_SYSTEM}_charlm")
        flags = ["--charlm-type", "fconv", "--decoder-lm",
                 os.path.join(layout.path("lm", "charlm", "ckpt"), "checkpoint_last.pt"),
                 "--lexicon", os.path.join(lm_dir, LEXICON), "--beam", str(preset.charlm_beam)]
        tuned = os.path.join(dest, "charlm.tuned.json")
        commands = [_tune(corpus, am, "charlm", flags, preset.charlm_lm_weights,
                          preset.charlm_word_scores, tuned)]
        commands += [_generate(layout, preset, am, "ltr", split, "charlm", dest, *flags,
                               "--decoder-settings", tuned) for split in EVAL_SPLITS]
        stages.append(Stage(N(f"decode/ltr/{CHARLM_SYSTEM}_charlm"), dest, commands,
                            [c.creates for c in commands],
                            inputs=[N(f"am/ltr/{CHARLM_SYSTEM}"), "lm/4gram", "lm/charlm"]))
    return stages


def build_seed_stages(layout: Layout, preset: Preset, seeds: Sequence[int]) -> List[Stage]:
    """The stages of one chain per seed: the first seed's as :func:`build_stages` names them,
    then each other seed's under ``seed{s}/`` (sharing the corpus and the LMs)."""
    stages: List[Stage] = []
    for seed in seeds:
        chain = dataclasses.replace(layout, seed=seed, chain=chain_name(seed, seeds[0]))
        stages += build_stages(chain, preset)
    return stages


def _generate(layout: Layout, preset: Preset, am: str, labels: str, split: str, decoder: str,
              dest: str, *flags: str) -> Command:
    """fairseq-generate of one split into ``dest/{decoder}/generate-{split}.txt`` (``--labels``:
    fairseq-generate sets the task up from the command line, not from the checkpoint)."""
    results = os.path.join(dest, decoder)
    return Command(
        ["fairseq-generate", layout.corpus, "--user-dir", layout.user_dir, "--task", "vqw2v_asr",
         "--path", am, "--labels", labels, "--gen-subset", split, "--batch-size", str(preset.decode_batch_size),
         *(["--cpu"] if preset.device == "cpu" else []), "--decoder", decoder,
         "--results-path", results, *flags],
        creates=os.path.join(results, f"generate-{split}.txt"),
    )


def _tune(corpus: str, am: str, decoder: str, flags: Sequence[str], lm_weights: str,
          word_scores: str, out: str) -> Command:
    """The tune CLI on valid: best LM weight and word score -> ``out``."""
    return Command(
        ["python", "-m", "fairseq_vqw2v.cli.tune", "--path", am, "--data", corpus, "--subset",
         "valid", "--decoder", decoder, *flags, f"--lm-weights={lm_weights}",
         f"--word-scores={word_scores}", "--out", out],
        creates=out,
    )


def default_labels(corpus: str, embedded: bool) -> List[str]:
    """The label kinds the corpus has for every split (both for the embedded corpus)."""
    if embedded:
        return list(LABEL_KINDS)
    return [k for k in LABEL_KINDS if all(os.path.exists(os.path.join(corpus, f"{s}.{k}")) for s in SPLITS)]
