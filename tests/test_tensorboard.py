"""``--tensorboard-logdir`` works (tensorboardX is a dependency), and fairseq no longer asks for
tensorboardX on every run."""

import struct

from tensorboardX.proto.event_pb2 import Event

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


def test_a_tiny_training_writes_tensorboard_events(tmp_path, fairseq_cli):
    write_corpus(str(tmp_path / "audio"), splits=(("train", 4),))
    logdir = tmp_path / "tb"
    result = fairseq_cli("train", *pretrain_args(tmp_path / "audio", tmp_path / "save", 2),
                         "--tensorboard-logdir", logdir, "--no-save")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Please install tensorboardX" not in result.stdout + result.stderr
    (events_file,) = (logdir / "train_inner").glob("events.out.tfevents.*")
    tags = {value.tag: value.simple_value
            for event in read_events(events_file) for value in event.summary.value}
    # the criterion's statistics, as fairseq logs them per update
    assert {"loss", "code_perplexity", "temp"} <= set(tags)
    assert tags["loss"] > 0
