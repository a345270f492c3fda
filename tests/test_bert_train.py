"""fairseq-train --task unit_mlm --arch unit_bert_tiny --criterion span_mlm, end to end."""

import re
import shutil
from pathlib import Path

import pytest
from _bert_util import unit_mlm_args, write_unit_corpus
from _train_util import build_trainer

import fairseq_vqw2v
from fairseq_vqw2v.models.unit_bert import load_unit_bert

USER_DIR = Path(fairseq_vqw2v.__file__).parent


def _train(fairseq_cli, data, save_dir, max_update):
    result = fairseq_cli("train", *unit_mlm_args(data, save_dir, max_update), threads=None)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    return log


@pytest.mark.slow  # two fairseq-train runs: 15 s alone, over a minute on a busy 2-core machine
def test_loss_decreases_and_training_resumes(tmp_path, fairseq_cli):
    data = write_unit_corpus(tmp_path / "units")
    log = _train(fairseq_cli, data, tmp_path / "ckpt", 30)
    losses = [float(x) for x in re.findall(r"train_inner \|.*?loss=([\d.]+)", log)]
    valid = [float(x) for x in re.findall(r"valid on 'valid' subset \| loss ([\d.]+)", log)]
    accuracy = [float(x) for x in re.findall(r"valid on 'valid' subset \|.*?accuracy ([\d.]+)", log)]
    assert len(losses) >= 4 and len(valid) >= 2
    assert losses[-1] < losses[0] - 1.0  # 6 bits (uniform over 68 types) down to < 5
    assert valid[-1] < valid[0]
    assert accuracy[-1] > 15  # chance is 1.5 %
    # a trained checkpoint loads for featurizing, its dictionary found through the task's data
    model, dictionary = load_unit_bert(str(tmp_path / "ckpt" / "checkpoint_last.pt"))
    assert len(model.encoder.layers) == 2 and dictionary.index("<mask>") == len(dictionary) - 1

    log = _train(fairseq_cli, data, tmp_path / "ckpt", 40)
    assert re.search(r"Loaded checkpoint .*checkpoint_last\.pt \(epoch \d+ @ 30 updates\)", log)
    assert re.search(r"num_updates 40\b", log)


def test_checkpoint_carries_its_dictionary_to_any_folder(tmp_path, monkeypatch):
    """Trained with a relative data path, read from elsewhere once the data folder is gone."""
    monkeypatch.chdir(tmp_path)
    write_unit_corpus(tmp_path / "units", splits=(("train", 8),))
    trainer = build_trainer(["units", "--user-dir", str(USER_DIR), "--task", "unit_mlm",
                             "--arch", "unit_bert_tiny", "--criterion", "span_mlm",
                             "--optimizer", "adam", "--lr", "1e-3", "--cpu"])
    trainer.consolidate_optimizer()  # as fairseq-train does before saving
    trainer.save_checkpoint("checkpoint_last.pt", {})
    expected = trainer.task.dictionary
    shutil.rmtree(tmp_path / "units")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    _, dictionary = load_unit_bert(str(tmp_path / "checkpoint_last.pt"))
    assert dictionary.symbols == expected.symbols and dictionary.count == expected.count
    assert dictionary.index("<mask>") == len(dictionary) - 1 == len(expected) - 1
