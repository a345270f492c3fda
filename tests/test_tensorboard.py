"""``--tensorboard-logdir`` works for the three trainings (tensorboardX is a dependency), and
fairseq no longer asks for tensorboardX on every run."""

import struct

import pytest
from tensorboardX.proto.event_pb2 import Event

from _asr_util import train_args, write_letter_corpus
from _bert_util import unit_mlm_args, write_unit_corpus
from _pretraining_util import pretrain_args, write_corpus


def read_events(path):
    """The events of one TFRecord file (length, its CRC, the record, its CRC; CRCs not checked)."""
    events, data = [], path.read_bytes()
    offset = 0
    while offset < len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        record = data[offset + 12: offset + 12 + length]
        events.append(Event.FromString(record))
        offset += 12 + length + 4
    return events


def pretraining(root):
    """Two updates of vq_wav2vec_tiny, not validated (as pretrain_args has it)."""
    write_corpus(str(root / "data"), splits=(("train", 4),))
    return pretrain_args(root / "data", root / "save", 2)


def unit_bert(root):
    """Two epochs of one update each, each validated."""
    data = write_unit_corpus(root / "data", splits=(("train", 8), ("valid", 2)))
    return unit_mlm_args(data, root / "save", 2)


def acoustic_model(root):
    """Two epochs of one update each, each validated."""
    write_letter_corpus(str(root / "data"), splits=(("train", 4), ("valid", 2)))
    return train_args(root / "data", root / "save", 2, "--input", "logmel")


# per training: {logged subset: statistics its events must hold}
@pytest.mark.parametrize("training, logged", [
    (pretraining, {"train_inner": {"loss", "code_perplexity", "temp"}, "train": {"loss"}}),
    (unit_bert, {"train_inner": {"loss", "accuracy"}, "train": {"loss"}, "valid": {"loss", "accuracy"}}),
    (acoustic_model, {"train_inner": {"loss"}, "train": {"loss"}, "valid": {"loss", "wer", "ler"}}),
])
def test_each_training_writes_tensorboard_events(training, logged, tmp_path, fairseq_cli):
    logdir = tmp_path / "tb"
    result = fairseq_cli("train", *training(tmp_path), "--log-interval", "1",
                         "--tensorboard-logdir", logdir, "--no-save")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Please install tensorboardX" not in result.stdout + result.stderr
    assert {path.name for path in logdir.iterdir()} == set(logged)
    for subset, statistics in logged.items():
        (events_file,) = (logdir / subset).glob("events.out.tfevents.*")
        tags = {value.tag: value.simple_value
                for event in read_events(events_file) for value in event.summary.value}
        assert statistics <= set(tags), (subset, sorted(tags))
        assert tags["loss"] > 0
