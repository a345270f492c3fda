"""Task ``vqw2v_asr``: CTC acoustic models on letters or phones, and their decoding.

Training (stage 3 of the pipeline)::

    fairseq-train DATA --user-dir fairseq_vqw2v --task vqw2v_asr --labels ltr --input bert \\
        --upstream vq.pt --bert bert.pt [--features FEATS] --arch w2l_ctc_wsj --criterion ctc_asr \\
        --max-tokens 20000 --optimizer adam --lr 1e-3 --best-checkpoint-metric wer

``DATA`` holds the manifests ``{split}.tsv`` and labels ``{split}.{ltr,phn}``; the dictionary is
``DATA/dict.{labels}.txt`` (built from ``train.{labels}`` when missing). ``--max-tokens`` counts
10 ms frames whatever the input. ``--input`` picks what the model sees: ``logmel``, ``wav2vec``
(``c`` of ``--upstream``, or cached by featurize in ``--features``), ``units`` (codes of ``--upstream``, or of a quantize folder
``--units-dir``) or ``bert`` (features of ``--bert`` on the units of ``--upstream`` or
``--units-dir``, or cached by featurize in ``--features``).

Decoding (stage 4)::

    fairseq-generate DATA --user-dir fairseq_vqw2v --task vqw2v_asr --path am.pt --gen-subset test \\
        --decoder kenlm --lexicon lexicon.txt --decoder-lm lm.bin --beam 50 --lm-weight 2 \\
        --word-score -1 --post-process letter --results-path out/ --batch-size 16

prints ``T-``/``H-`` lines (reference and hypothesis) per utterance and, once the whole split is
decoded, the corpus WER and LER (letters) or PER (39 folded phones). fairseq-generate's own
``--lm-path`` loads fairseq models and cannot take a KenLM file, hence ``--decoder-lm``; its
``--beam``, ``--nbest`` and ``--lm-weight`` are used as they are (fairseq's defaults are beam 5
and LM weight 0: pass ``--beam 50 --lm-weight 2`` for the reference's decoder settings).
"""

import logging
import os
from dataclasses import dataclass, field
from typing import Optional

import torch
from fairseq.data import Dictionary
from fairseq.dataclass import ChoiceEnum
from fairseq.tasks import register_task
from omegaconf import II, MISSING, open_dict

from ..checkpoint import check_model_config
from ..constants import SAMPLE_RATE
from ..data.asr_dataset import AsrDataset, AudioSource, FeatureSource, UnitSource
from ..data.labels import (LABEL_KINDS, LABEL_UNITS, encode_labels, load_label_dictionary,
                           read_label_lines)
from ..data.manifest import ManifestError, check_split_name, read_manifest
from ..decoding.config import DecoderConfig
from ..decoding.factory import build_decoder
from ..decoding.scoring import ErrorRates
from ..models.frontends import INPUT_KINDS, FrontendSpec, input_source
from ..models.w2l_ctc import W2lCtcModel, fill_missing_options
from ._common import AutocastTask, TrainingTaskConfig, check_training_run, is_train_split

logger = logging.getLogger(__name__)

@dataclass
class AsrConfig(TrainingTaskConfig):
    data: str = field(
        default=MISSING, metadata={"help": "folder of {split}.tsv manifests and {split}.{labels}"}
    )
    labels: ChoiceEnum(LABEL_KINDS) = field(
        default="ltr", metadata={"help": "targets: ltr (letters, | ends words) or phn (phones)"}
    )
    input: ChoiceEnum(INPUT_KINDS) = field(
        default="logmel", metadata={"help": "what the acoustic model sees"}
    )
    upstream: Optional[str] = field(
        default=None,
        metadata={"help": "vq_wav2vec checkpoint (--input wav2vec, units, bert from audio)"},
    )
    bert: Optional[str] = field(default=None, metadata={"help": "unit_bert checkpoint (--input bert)"})
    features: Optional[str] = field(
        default=None,
        metadata={"help": "--input bert or wav2vec: folder of cached features from featurize, "
                  "instead of computing them every epoch"},
    )
    units_dir: Optional[str] = field(
        default=None,
        metadata={"help": "--input units or bert: folder of {split}.src units from quantize, "
                  "instead of quantizing audio with --upstream"},
    )
    sample_rate: int = field(default=SAMPLE_RATE, metadata={"help": "sample rate of every file"})
    # decoding (fairseq-generate): flat flags, --decoder, --decoder-lm, --beam-threshold, ...
    decoding: DecoderConfig = field(default_factory=DecoderConfig)
    seed: int = II("common.seed")


@register_task("vqw2v_asr", dataclass=AsrConfig)
class AsrTask(AutocastTask):
    cfg: AsrConfig

    def __init__(self, cfg: AsrConfig, dictionary: Dictionary):
        super().__init__(cfg)
        self.dictionary = dictionary
        # what the model built by this task reads (its cached features are checked against it)
        self.frontend_spec: Optional[FrontendSpec] = None

    @classmethod
    def setup_task(cls, cfg: AsrConfig, **kwargs):
        check_training_run(cfg)
        dictionary = load_label_dictionary(cfg.data, cfg.labels)
        logger.info(f"label dictionary: {len(dictionary)} symbols ({cfg.labels})")
        return cls(cfg, dictionary)

    def load_dataset(self, split: str, combine: bool = False, task_cfg=None, **kwargs):
        # fairseq-generate passes the training run's task config: what the model was fed
        cfg = task_cfg if task_cfg is not None else self.cfg
        manifest_path = os.path.join(self.cfg.data, f"{check_split_name(split)}.tsv")
        manifest = read_manifest(manifest_path)
        if not manifest.entries:
            raise ManifestError(f"{manifest_path}: no utterances")
        label_path = os.path.join(self.cfg.data, f"{split}.{cfg.labels}")
        lines = read_label_lines(label_path, len(manifest.entries))
        targets = encode_labels(label_path, lines, self.dictionary)
        kind = input_source(cfg.input, cfg.features, cfg.units_dir)
        if kind == "features":
            source = FeatureSource(self.cfg.features or cfg.features, split, len(manifest.entries))
            spec = self.frontend_spec
            if spec is not None and spec.source == "features":
                source.check_layout(spec.feature_dim, spec.feature_layers)
        elif kind == "units":
            source = UnitSource(self.cfg.units_dir or cfg.units_dir, split, len(manifest.entries))
        else:
            source = AudioSource(manifest_path, self.cfg.sample_rate)
        self.datasets[split] = AsrDataset(
            source, targets, self.dictionary.pad(), shuffle=is_train_split(self.cfg, split)
        )
        logger.info(f"{split}: {len(targets)} utterances, {int(source.frames.sum())} frames "
                    f"({kind}), {sum(len(t) for t in targets)} labels")

    def build_model(self, cfg, from_checkpoint=False):
        check_model_config(cfg, (W2lCtcModel,))  # see PretrainingTask.build_model
        with open_dict(cfg):
            if from_checkpoint:
                # fairseq-generate builds the task, and so the label dictionary, from its own flags
                trained_on = cfg.get("labels", self.cfg.labels)
                if trained_on != self.cfg.labels:
                    raise ValueError(f"the acoustic model was trained on --labels {trained_on}: "
                                     f"decode it with --labels {trained_on}")
                # upstream paths given now replace the recorded ones (hashes are still checked)
                cfg.upstream = self.cfg.upstream or cfg.upstream
                cfg.bert = self.cfg.bert or cfg.bert
                fill_missing_options(cfg)
            else:
                self.record_inputs(cfg)
        self.frontend_spec = FrontendSpec.of_model(cfg)
        model = super().build_model(cfg, from_checkpoint)
        logger.info(f"w2l_ctc on {cfg.input} ({self.frontend_spec.source}): "
                    f"{sum(p.numel() for p in model.parameters() if p.requires_grad)} trainable "
                    f"parameters")
        return model

    def record_inputs(self, cfg):
        """Writes into the model config what the model reads (:class:`FrontendSpec`), so that it
        rebuilds its frontend from a checkpoint."""
        FrontendSpec.resolve(
            self.cfg.input, self.cfg.upstream, self.cfg.bert, self.cfg.features,
            self.cfg.units_dir, split=next(iter(self.datasets), "valid"),
        ).record(cfg)

    def optimizer_step(self, optimizer, model, update_num):
        """Scales the updates of a fine-tuned upstream by ``upstream_lr_scale`` (for any
        optimizer: the step is taken, then pulled back towards the old weights)."""
        # no unwrapping: in distributed training fairseq's ModuleProxyWrapper forwards these
        # attributes to the model behind DDP, whose .module is the DDP wrapper, not the model
        params = model.upstream_parameters() if hasattr(model, "upstream_parameters") else []
        params = [p for p in params if p.grad is not None]
        scale = getattr(model.cfg, "upstream_lr_scale", 1.0)
        if not params or scale == 1.0:
            return super().optimizer_step(optimizer, model, update_num)
        before = [p.detach().clone() for p in params]
        super().optimizer_step(optimizer, model, update_num)
        with torch.no_grad():
            for p, old in zip(params, before):
                p.mul_(scale).add_(old, alpha=1.0 - scale)

    def build_generator(self, models, args, **kwargs):
        # fairseq-generate's own --beam, --nbest and --lm-weight filled cfg.decoding.search
        decoder = build_decoder(self.cfg.decoding, self.dictionary)
        if self.cfg.decoding.decoder != "viterbi" and decoder.cfg.lm_weight == 0:
            logger.warning("--lm-weight is 0 (fairseq-generate's default): the LM does not "
                           "count; fairseq's speech decoders use 2, or tune it with the tune CLI")
        # fairseq-generate loads exactly the split it decodes
        expected = len(next(iter(self.datasets.values()))) if len(self.datasets) == 1 else None
        return CtcGenerator(models[0], decoder, self.dictionary, self.cfg.labels, expected)

    def inference_step(self, generator, models, sample, prefix_tokens=None, constraints=None):
        return generator.generate(sample)

    @property
    def source_dictionary(self):
        return None

    @property
    def target_dictionary(self):
        return self.dictionary

    def max_positions(self):
        return None


@torch.no_grad()
def utterance_emissions(model, source: torch.Tensor, length: int) -> torch.Tensor:
    """One utterance (the first ``length`` samples, frames or codes of ``source``) -> T' x V
    log-probs on CPU. Utterances run alone: in a padded batch, float kernels sum in another order,
    and scores would depend on the batch."""
    net_output = model(source[None, :length], source.new_tensor([length], dtype=torch.long))
    lprobs = model.get_normalized_probs(net_output, log_probs=True)
    return lprobs[0, : int(net_output["lengths"][0])].float().cpu()


class CtcGenerator:
    """What fairseq-generate calls a generator: emissions of the acoustic model, decoded; keeps
    the error rates of the split and logs them once every utterance is decoded."""

    def __init__(self, model, decoder, dictionary: Dictionary, labels: str,
                 expected: Optional[int] = None):
        self.model, self.decoder, self.dictionary = model, decoder, dictionary
        self.expected = expected
        self.rates = ErrorRates(unit_kind=LABEL_UNITS[labels])
        self.symbols_to_strip_from_output = set()
        self.decoded = 0

    def generate(self, sample):
        net_input = sample["net_input"]
        hypos = []
        for source, length in zip(net_input["source"], net_input["source_lengths"].tolist()):
            lprobs = utterance_emissions(self.model, source, length)
            hypos += self.decoder.decode(lprobs[None], torch.tensor([len(lprobs)]))
        for nbest, target, n in zip(hypos, sample["target"], sample["target_lengths"].tolist()):
            self.rates.add(self.dictionary.string(target[:n]),
                           self.dictionary.string(nbest[0]["tokens"]))
            for hypo in nbest:
                # fairseq's hypotheses end with </s> (its BLEU scorer crashes on an empty one)
                eos = hypo["tokens"].new_tensor([self.dictionary.eos()])
                hypo["tokens"] = torch.cat([hypo["tokens"], eos])
                hypo["alignment"] = None
                hypo["positional_scores"] = torch.zeros(len(hypo["tokens"]))
        self.decoded += len(hypos)
        if self.decoded == self.expected:
            logger.info(f"decoded {self.summary()}")
            if self.rates.on_plateau:
                unit = self.rates.unit_kind
                logger.warning(
                    f"the output holds {self.rates.output_ratio:.2f} {unit}s per reference {unit}: "
                    f"the acoustic model is still on CTC's all-blank plateau, so its "
                    f"{self.rates.unit_name} measures a training that did not start, not its "
                    f"input; train it for more updates (docs/reproducing.md, 'The seed-3 phone "
                    f"models on the all-blank plateau')")
        return hypos

    def summary(self) -> str:
        return f"{self.decoded} utterances: {self.rates}"
