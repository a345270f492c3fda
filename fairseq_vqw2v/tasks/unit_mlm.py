"""``unit_mlm``: masked-LM training on discrete units with the paper's span masking.

Stage 2 of the pipeline, on the quantizer's output folder (``dict.txt`` + ``{split}.src``)::

    fairseq-train data/units --user-dir fairseq_vqw2v --task unit_mlm --criterion span_mlm \
        --arch unit_bert_small --tokens-per-sample 512 --max-tokens 8192 \
        --optimizer adam --lr 5e-4 --lr-scheduler polynomial_decay --warmup-updates 10000 \
        --total-num-update 250000 --max-update 250000

Defaults mask as the paper: span starts with probability 0.05, 10 tokens each, with masked_lm's
80/10/10 (10 % of masked positions left unchanged, 10 % given a random unit; the paper's BERT was
trained by masked_lm; ``--leave-unmasked-prob 0 --random-token-prob 0`` masks only);
``--mask-semantics fairseq --mask-prob 0.5`` gives masked_lm's span rule. ``--dedup-units``
trains on de-duplicated units (:mod:`fairseq_vqw2v.data.dedup`). Large corpora load faster
binarized once: ``fairseq-preprocess --only-source --srcdict dict.txt --trainpref train.src ...``
into the same folder (``{split}.bin/.idx`` are preferred over ``{split}.src``).
"""

import logging
from dataclasses import dataclass, field

from omegaconf import II, MISSING

from fairseq.data import Dictionary
from fairseq.dataclass import ChoiceEnum
from fairseq.tasks import register_task

from ..checkpoint import check_model_config
from ..data.span_mask import MASK_PROB, SEMANTICS, SPAN_LENGTH
from ..data.unit_dataset import SpanMaskedUnitDataset, UnitDataset, load_units
from ..data.unit_files import (MAX_UNKNOWN_UNITS, add_mask, dictionary_state, load_unit_dictionary,
                               unit_dict_path)
from ..models.unit_bert import UNIT_DICTIONARY_STATE
from ..models.unit_bert import UnitBertModel
from ._common import AutocastTask, TrainingTaskConfig, check_training_run, is_train_split

logger = logging.getLogger(__name__)


@dataclass
class UnitMlmConfig(TrainingTaskConfig):
    data: str = field(
        default=MISSING,
        metadata={
            "help": "folder with dict.txt and {split}.src unit files (or fairseq binarized "
            "{split}.bin/.idx from fairseq-preprocess --only-source --srcdict dict.txt)"
        },
    )
    tokens_per_sample: int = field(
        default=512,
        metadata={"help": "longest sample in tokens, framing included; longer utterances are "
                  "cropped (a random window in training, the start otherwise)"},
    )
    frame: bool = field(
        default=True, metadata={"help": "wrap each utterance as <s> units </s>"}
    )
    mask_semantics: ChoiceEnum(SEMANTICS) = field(
        default="paper",
        metadata={"help": "paper: mask_prob is the probability of a span start; fairseq: "
                  "masked_lm's rule, num spans = mask_prob * length / mask_length"},
    )
    mask_prob: float = field(
        default=MASK_PROB, metadata={"help": "span start probability (paper) or masked_lm's mask_prob"}
    )
    mask_length: int = field(default=SPAN_LENGTH, metadata={"help": "tokens per masked span (M)"})
    mask_stdev: float = field(
        default=0.0, metadata={"help": "stdev of the span length (masked_lm's mask_stdev)"}
    )
    # masked_lm's defaults (BERT's 80/10/10), the code path that trained the paper's BERT
    leave_unmasked_prob: float = field(
        default=0.1, metadata={"help": "share of masked positions left unchanged (masked_lm's "
                               "default 0.1; 0 with --random-token-prob 0 masks only)"}
    )
    random_token_prob: float = field(
        default=0.1, metadata={"help": "share of masked positions given a random unit "
                               "(masked_lm's default 0.1)"}
    )
    dedup_units: bool = field(
        default=False,
        metadata={"help": "merge consecutive repeats of a unit into one token before cropping "
                  "and masking; featurizers of this BERT then de-duplicate its input and expand "
                  "its features back to 10 ms frames by the durations"},
    )
    max_unknown_units: float = field(
        default=MAX_UNKNOWN_UNITS,
        metadata={"help": "largest share of a .src file's units missing from dict.txt (<unk>) "
                  "before training stops: units and dictionary of different quantizers"},
    )
    seed: int = II("common.seed")


@register_task("unit_mlm", dataclass=UnitMlmConfig)
class UnitMlmTask(AutocastTask):
    """One utterance per sample; the dictionary is ``dict.txt`` plus ``<mask>`` (as masked_lm,
    so a model trained by either task has the same vocabulary)."""

    cfg: UnitMlmConfig

    def __init__(self, cfg: UnitMlmConfig, dictionary: Dictionary):
        super().__init__(cfg)
        self.dictionary = dictionary
        self.mask_idx = add_mask(dictionary)

    @classmethod
    def setup_task(cls, cfg: UnitMlmConfig, **kwargs):
        check_training_run(cfg)
        dictionary = load_unit_dictionary(unit_dict_path(cfg.data))
        logger.info(f"unit dictionary: {len(dictionary)} types")
        return cls(cfg, dictionary)

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        units = load_units(self.cfg.data, split, self.dictionary, self.cfg.max_unknown_units)
        if self.cfg.dedup_units:
            frames = int(units.sizes.sum())
            units = (units if isinstance(units, UnitDataset) else UnitDataset.of(units)).deduplicated()
            logger.info(f"{split}: de-duplicated {frames} frames into {int(units.sizes.sum())} units")
        train = is_train_split(self.cfg, split)
        self.datasets[split] = SpanMaskedUnitDataset(
            units,
            self.dictionary,
            self.mask_idx,
            tokens_per_sample=self.cfg.tokens_per_sample,
            seed=self.cfg.seed,
            mask_prob=self.cfg.mask_prob,
            mask_length=self.cfg.mask_length,
            mask_stdev=self.cfg.mask_stdev,
            mask_semantics=self.cfg.mask_semantics,
            # valid measures prediction from context alone: a masked position left unchanged
            # would let the model copy its target and flatter the loss
            leave_unmasked_prob=self.cfg.leave_unmasked_prob if train else 0.0,
            random_token_prob=self.cfg.random_token_prob if train else 0.0,
            frame=self.cfg.frame,
            random_crop=train,
            shuffle=train,
        )
        logger.info(f"{split}: {len(units)} utterances, {int(units.sizes.sum())} units")

    def state_dict(self):
        # saved in every checkpoint: its dictionary is then found wherever the checkpoint is read
        # from, not through the (relative) data path recorded at training time
        return {**super().state_dict(), UNIT_DICTIONARY_STATE: dictionary_state(self.dictionary)}

    def build_model(self, cfg, from_checkpoint=False):
        check_model_config(cfg, (UnitBertModel,))  # see PretrainingTask.build_model
        return super().build_model(cfg, from_checkpoint)

    @property
    def source_dictionary(self):
        return self.dictionary

    @property
    def target_dictionary(self):
        return self.dictionary

    def max_positions(self):
        return self.cfg.tokens_per_sample
