"""In-process fairseq training: the config fairseq-train builds from a command line, then updates
of fairseq's own Trainer, for tests (and benchmarks) that need the model and each update's loss."""

import itertools
import time
from typing import Dict, Iterator, List, Sequence

import torch
from fairseq import options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.logging import metrics
from fairseq.trainer import Trainer

import fairseq_vqw2v  # noqa: F401  (registers the tasks fairseq-train's parser offers)


def build_trainer(argv: Sequence[str]) -> Trainer:
    """fairseq-train's setup for ``argv`` (its command line without the program name): task,
    training split, model, criterion and Trainer, seeded as fairseq-train seeds them."""
    args = options.parse_args_and_arch(options.get_training_parser(), list(map(str, argv)))
    cfg = convert_namespace_to_omegaconf(args)
    torch.manual_seed(cfg.common.seed)
    task = tasks.setup_task(cfg.task)
    task.load_dataset(cfg.dataset.train_subset)
    model = task.build_model(cfg.model)
    return Trainer(cfg, task, model, task.build_criterion(cfg.criterion))


def batches(trainer: Trainer) -> Iterator[dict]:
    """The training split's batches in order, epoch after epoch."""
    epoch = 1
    while True:
        yield from trainer.get_train_iterator(epoch, load_dataset=False).next_epoch_itr(shuffle=False)
        epoch += 1


def train(trainer: Trainer, updates: int) -> List[Dict[str, float]]:
    """``updates`` updates on :func:`batches`; each update's stats as fairseq-train logs them
    with ``--log-interval 1`` (rounded), with ``cpu_seconds`` of the update added."""
    stats = []
    for sample in itertools.islice(batches(trainer), updates):
        start = time.process_time()
        with metrics.aggregate(new_root=True):
            logged = trainer.train_step([sample])
        stats.append({**{k: float(v) for k, v in logged.items()},
                      "cpu_seconds": time.process_time() - start})
    return stats
