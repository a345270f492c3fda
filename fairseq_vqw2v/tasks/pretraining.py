"""Task ``vqw2v_pretraining``: contrastive pretraining on raw audio, and units out.

Training reads ``{split}.tsv`` manifests from ``--data`` (random crops of ``--max-sample-size``,
batches of ``--max-tokens`` samples). ``fairseq-generate DATA --task vqw2v_pretraining
--path checkpoint.pt --gen-subset valid --batch-size 8`` quantizes full utterances (no crop,
padding masks) and prints, per utterance, its unit tokens::

    H-<id>\\t0.0\\t12-301 12-301 7-45 ...

(``<id>`` is the utterance's position among the kept manifest lines; ``D-`` repeats the line and
``P-`` gives zeros, since quantization has no scores). Use ``--batch-size``, not ``--max-tokens``:
fairseq refuses utterances longer than ``--max-tokens`` samples.
"""

import os
from dataclasses import dataclass, field
from typing import Optional

from fairseq.tasks import register_task
from omegaconf import II, MISSING

from ..checkpoint import check_model_config
from ..constants import SAMPLE_RATE
from ..data.audio_dataset import ManifestAudioDataset
from ..data.manifest import check_split_name
from ..data.unit_files import UnitDictionary
from ..models.vq_wav2vec import VqWav2VecModel, codebook_shape
from ._common import AutocastTask, TrainingTaskConfig, check_training_run


@dataclass
class PretrainingConfig(TrainingTaskConfig):
    data: str = field(
        default=MISSING, metadata={"help": "folder of the {split}.tsv manifests (manifests/*.py)"}
    )
    sample_rate: int = field(
        default=SAMPLE_RATE, metadata={"help": "sample rate every audio file must have"}
    )
    normalize: bool = field(
        default=False, metadata={"help": "normalize each utterance to zero mean, unit variance"}
    )
    enable_padding: bool = field(
        default=False,
        metadata={"help": "pad batches to their longest item instead of cropping to the shortest"},
    )
    max_sample_size: Optional[int] = field(
        default=None, metadata={"help": "random crop of longer utterances, in samples"}
    )
    min_sample_size: Optional[int] = field(
        default=None, metadata={"help": "leave out utterances shorter than this, in samples"}
    )
    rebuild_batches: bool = field(
        default=True,
        metadata={
            "help": "rebuild the batches every epoch (seeded by seed + epoch, as fairseq's "
            "audio_pretraining): a run resumed at any epoch then sees the same batches"
        },
    )
    seed: int = II("common.seed")


class UnitGenerator:
    """What ``fairseq-generate`` calls a generator: quantizes a batch with the first model."""

    def __init__(self, model, dictionary: UnitDictionary):
        self.model, self.dictionary = model, dictionary
        self.symbols_to_strip_from_output = set()

    def generate(self, sample):
        net_input = sample["net_input"]
        codes = self.model.encode(net_input["source"], net_input.get("padding_mask"))
        hypos = []
        for c in codes:
            tokens = self.dictionary.flat_index(c)
            hypos.append(
                [
                    {
                        "tokens": tokens,
                        "score": 0.0,
                        "positional_scores": tokens.new_zeros(len(tokens)).float(),
                        "alignment": None,
                    }
                ]
            )
        return hypos


@register_task("vqw2v_pretraining", dataclass=PretrainingConfig)
class PretrainingTask(AutocastTask):
    """Raw-audio contrastive pretraining (vq-wav2vec); quantization via ``fairseq-generate``."""

    cfg: PretrainingConfig

    def __init__(self, cfg: PretrainingConfig):
        super().__init__(cfg)
        self.unit_dictionary = UnitDictionary()

    @classmethod
    def setup_task(cls, cfg: PretrainingConfig, **kwargs):
        check_training_run(cfg)
        return cls(cfg)

    def load_dataset(self, split: str, **kwargs):
        # the task's own config (training: the run's; generation: the command line's), not the
        # checkpoint's: generation must not inherit training crops
        self.datasets[split] = ManifestAudioDataset(
            os.path.join(self.cfg.data, f"{check_split_name(split)}.tsv"),
            sample_rate=self.cfg.sample_rate,
            max_sample_size=self.cfg.max_sample_size,
            min_sample_size=self.cfg.min_sample_size,
            pad=self.cfg.enable_padding,
            normalize=self.cfg.normalize,
            seed=self.cfg.seed,
            skip_bad=True,
        )

    def build_model(self, cfg, from_checkpoint=False):
        # fairseq-generate builds whatever model a checkpoint names, and fairseq's own wav2vec
        # eval()s its layer lists: refuse anything else before it is built
        check_model_config(cfg, (VqWav2VecModel,))
        return super().build_model(cfg, from_checkpoint)

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        # the criterion's collapse warning counts updates, which only the task is told
        if hasattr(criterion, "set_num_updates"):
            criterion.set_num_updates(update_num)
        return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        # the collapse warning needs the whole update's counts, all workers' batches: fairseq has
        # summed them only here, and calls this after training and validation steps alike
        if criterion.training and hasattr(criterion, "observe_update"):
            criterion.observe_update(logging_outputs)

    def build_generator(self, models, args, **kwargs):
        model = models[0]
        self.unit_dictionary.set_codebook(*codebook_shape(model))
        for dataset in self.datasets.values():
            dataset.use_full_utterances()
        return UnitGenerator(model, self.unit_dictionary)

    def inference_step(self, generator, models, sample, prefix_tokens=None, constraints=None):
        return generator.generate(sample)

    @property
    def source_dictionary(self):
        return None

    @property
    def target_dictionary(self):
        return self.unit_dictionary
