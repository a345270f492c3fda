"""Acoustic-model data: label files and dictionaries, the datasets, the CTC criterion, frontends."""

import logging
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from _asr_util import corpus_with_upstreams, write_letter_corpus
from fairseq_vqw2v.constants import SAMPLE_RATE
from fairseq_vqw2v.criterions.ctc_asr import CtcAsrConfig, CtcAsrCriterion, required_frames
from fairseq_vqw2v.data.labels import encode_labels, load_label_dictionary, read_label_lines
from fairseq_vqw2v.data.manifest import ManifestError
from fairseq_vqw2v.decoding.config import DecoderConfig
from fairseq_vqw2v.decoding.factory import build_decoder
from fairseq_vqw2v.decoding.scoring import ErrorRates
from fairseq_vqw2v.models.w2l_ctc import W2lCtcConfig, W2lCtcModel
from fairseq_vqw2v.tasks.asr import AsrConfig, AsrTask, CtcGenerator


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return corpus_with_upstreams(tmp_path_factory.mktemp("asr_data"), (("train", 6), ("valid", 3)))


def task_for(data, **overrides):
    return AsrTask.setup_task(AsrConfig(data=str(data), **overrides))


def test_dictionary_is_built_from_train_then_reused(tmp_path):
    write_letter_corpus(str(tmp_path), splits=(("train", 4),))
    dictionary = load_label_dictionary(str(tmp_path), "ltr")
    path = tmp_path / "dict.ltr.txt"
    assert path.exists()
    letters = set((tmp_path / "train.ltr").read_text().split())
    assert {dictionary[i] for i in range(dictionary.nspecial, len(dictionary))} == letters
    path.write_text(path.read_text() + "z 1\n")  # a later run reads the file, not train
    assert "z" in load_label_dictionary(str(tmp_path), "ltr").indices


def test_empty_dictionary_is_an_error(tmp_path):
    (tmp_path / "dict.ltr.txt").write_text("")
    with pytest.raises(ManifestError, match="dict.ltr.txt: the label dictionary is empty"):
        load_label_dictionary(str(tmp_path), "ltr")


def test_label_line_count_must_match_the_manifest(tmp_path):
    path = tmp_path / "valid.ltr"
    path.write_text("a |\nb |\n")
    with pytest.raises(ManifestError, match=r"valid.ltr: 2 label lines but the manifest has 3"):
        read_label_lines(str(path), 3)


def test_empty_label_line_names_file_and_line(tmp_path):
    path = tmp_path / "valid.ltr"
    path.write_text("a |\n  \nb |\n")
    with pytest.raises(ManifestError, match=r"valid.ltr:2: empty label line"):
        read_label_lines(str(path), 3)


def test_symbol_outside_the_dictionary_names_file_and_line(corpus):
    root, _, _ = corpus
    task = task_for(root / "data")
    with pytest.raises(ManifestError, match=r"x.ltr:2: symbol 'q' is not in the label dictionary"):
        encode_labels("x.ltr", ["b a d |", "q a d |"], task.target_dictionary)
    # specials are not labels either
    with pytest.raises(ManifestError, match=r"x.ltr:1: symbol '<unk>'"):
        encode_labels("x.ltr", ["<unk> |"], task.target_dictionary)


def test_dataset_batches_count_frames_and_pad_targets(corpus):
    root, _, _ = corpus
    task = task_for(root / "data")
    task.load_dataset("valid")
    dataset = task.dataset("valid")
    sizes = [int(line.split("\t")[1]) for line in (root / "data" / "valid.tsv").read_text().split("\n")[1:] if line]
    assert dataset.sizes.tolist() == [n // 160 for n in sizes]
    batch = dataset.collater([dataset[i] for i in range(3)])
    assert batch["net_input"]["source"].shape == (3, max(sizes))
    assert batch["net_input"]["source_lengths"].tolist() == sizes
    labels = (root / "data" / "valid.ltr").read_text().split("\n")[:3]
    assert batch["target_lengths"].tolist() == [len(line.split()) for line in labels]
    assert batch["ntokens"] == sum(len(line.split()) for line in labels)
    d = task.target_dictionary
    for row, line in zip(batch["target"], labels):
        assert d.string(row[row != d.pad()]) == line


def test_required_frames_counts_blanks_between_repeats():
    target = torch.tensor([[5, 5, 6, 6, 6], [7, 8, 7, 1, 1]])
    assert required_frames(target, torch.tensor([5, 3])).tolist() == [5 + 3, 3]


def _valid_logmel_model(corpus):
    """(task, valid dataset, a seeded log-mel model, its ctc_asr criterion) on the corpus."""
    root, _, _ = corpus
    task = task_for(root / "data")
    task.load_dataset("valid")
    torch.manual_seed(0)
    model = W2lCtcModel(W2lCtcConfig(input="logmel", upstream=None, bert=None), len(task.target_dictionary))
    return task, task.dataset("valid"), model, CtcAsrCriterion(CtcAsrConfig(), task)


def test_infeasible_utterance_is_dropped_not_inf(corpus):
    task, dataset, model, criterion = _valid_logmel_model(corpus)
    samples = [dataset[i] for i in range(3)]
    # 50 Hz emissions: a target of more labels than frames cannot be aligned
    frames = model.body.output_lengths(model.frontend.fbank.output_lengths(torch.tensor([len(samples[0]["source"])])))
    samples[0] = {**samples[0], "target": torch.full((int(frames) + 1,), 5, dtype=torch.long)}
    batch = dataset.collater(samples)
    model.eval()
    loss, sample_size, log = criterion(model, batch)
    assert torch.isfinite(loss) and loss.item() > 0
    assert log["dropped"] == 1 and log["nsentences"] == 2
    assert sample_size == int(batch["target_lengths"][1:].sum())
    # valid logs greedy error counts over every utterance, dropped ones included
    d = task.target_dictionary
    refs = ErrorRates()
    for row, n in zip(batch["target"], batch["target_lengths"].tolist()):
        refs.add(d.string(row[:n]), "")
    assert (log["u_total"], log["w_total"]) == (refs.units, refs.words)


def _best_label_everywhere(model, index):
    """Makes label ``index`` every frame's best, whatever the input (the output layer's bias alone)."""
    with torch.no_grad():
        model.output.weight.zero_()
        model.output.bias.fill_(0.0)
        model.output.bias[index] = 10.0


def test_valid_logs_the_output_ratio_zero_on_the_all_blank_plateau(corpus):
    from fairseq import metrics

    task, dataset, model, criterion = _valid_logmel_model(corpus)
    batch = dataset.collater([dataset[i] for i in range(3)])
    model.eval()

    def output_ratio(log):
        with metrics.aggregate() as agg:
            CtcAsrCriterion.reduce_metrics([log])
            return agg.get_smoothed_values()["output_ratio"]

    # every frame's best label the blank: the greedy output is empty
    _best_label_everywhere(model, criterion.blank)
    _, _, log = criterion(model, batch)
    assert log["h_total"] == 0 and log["u_total"] > 0 and output_ratio(log) == 0.0
    # a label other than the blank everywhere: one per run of frames, so far fewer than frames
    _best_label_everywhere(model, task.target_dictionary.index("a"))
    _, _, log = criterion(model, batch)
    assert log["h_total"] > 0
    assert output_ratio(log) == round(log["h_total"] / log["u_total"], 3)


def test_generate_warns_when_the_model_is_on_the_all_blank_plateau(corpus, caplog):
    task, dataset, model, criterion = _valid_logmel_model(corpus)
    batch = dataset.collater([dataset[i] for i in range(3)])
    model.eval()
    _best_label_everywhere(model, criterion.blank)
    d = task.target_dictionary
    generator = CtcGenerator(model, build_decoder(DecoderConfig(), d), d, "ltr", expected=3)
    with caplog.at_level(logging.WARNING, logger="fairseq_vqw2v.tasks.asr"):
        generator.generate(batch)
    assert generator.rates.output_ratio == 0.0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "0.00 letters per reference letter" in warnings[0]
    assert "all-blank plateau" in warnings[0] and "LER measures" in warnings[0]


def test_frozen_upstreams_stay_out_of_the_checkpoint_and_in_eval_mode(corpus):
    root, vq, bert = corpus
    cfg = W2lCtcConfig(input="bert", upstream=vq, bert=bert)
    model = W2lCtcModel(cfg, 10)
    model.train()
    assert not model.frontend.upstreams.training
    assert not any(p.requires_grad for p in model.frontend.upstreams.parameters())
    state = model.state_dict()
    assert not [k for k in state if "upstream" in k]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("body.", "output.")) for n in trainable)
    # loading the small state dict restores the same model, upstreams included
    other = W2lCtcModel(cfg, 10)
    other.load_state_dict(state)
    torch.testing.assert_close(other.output.weight, model.output.weight)


def test_finetuned_bert_is_trainable_and_saved(corpus):
    root, vq, bert = corpus
    model = W2lCtcModel(W2lCtcConfig(input="bert", upstream=vq, bert=bert, finetune_upstream=True), 10)
    assert model.upstream_parameters() and all(p.requires_grad for p in model.upstream_parameters())
    assert any(k.startswith("frontend.bert.") for k in model.state_dict())
    assert not any(k.startswith("frontend.upstreams.") for k in model.state_dict())


def test_changed_upstream_is_refused(corpus, tmp_path):
    root, vq, bert = corpus
    with pytest.raises(ValueError, match=r"--upstream .*: this file \(sha256 .*\) is not the checkpoint"):
        W2lCtcModel(W2lCtcConfig(input="wav2vec", upstream=vq, bert=None, upstream_sha256="0" * 64), 10)
    with pytest.raises(ValueError, match="--input wav2vec needs --upstream PATH"):
        W2lCtcModel(W2lCtcConfig(input="wav2vec", upstream=None, bert=None), 10)


@pytest.mark.parametrize("kind", ["logmel", "wav2vec", "units", "bert"])
def test_every_input_kind_is_padding_invariant(corpus, kind):
    root, vq, bert = corpus
    task = task_for(root / "data", input=kind, upstream=vq, bert=bert)
    task.load_dataset("valid")
    dataset = task.dataset("valid")
    torch.manual_seed(0)
    model = W2lCtcModel(W2lCtcConfig(input=kind, upstream=vq, bert=bert), len(task.target_dictionary)).eval()
    batch = dataset.collater([dataset[i] for i in range(3)])
    with torch.no_grad():
        together = model(**batch["net_input"])
        for i in range(3):
            alone = model(**dataset.collater([dataset[i]])["net_input"])
            n = int(alone["lengths"][0])
            assert int(together["lengths"][i]) == n
            torch.testing.assert_close(together["logits"][i, :n], alone["logits"][0], atol=1e-4, rtol=1e-4)


def test_upstream_sees_audio_normalised_as_in_its_pretraining(corpus):
    """A vq_wav2vec pretrained with --normalize sees each utterance as fairseq's layer_norm of
    the whole waveform, also inside a padded batch."""
    import torch.nn.functional as F

    root, vq, bert = corpus
    task = task_for(root / "data", input="wav2vec", upstream=vq)
    task.load_dataset("valid")
    dataset = task.dataset("valid")
    model = W2lCtcModel(W2lCtcConfig(input="wav2vec", upstream=vq, bert=None), len(task.target_dictionary)).eval()
    model.frontend.upstreams.normalize_audio = True
    batch = dataset.collater([dataset[i] for i in range(3)])
    feats, lengths = model.frontend(batch["net_input"]["source"], batch["net_input"]["source_lengths"])
    for i in range(3):
        audio = dataset[i]["source"]
        with torch.no_grad():
            c = model.frontend.upstreams.vq.extract_features(F.layer_norm(audio, audio.shape)[None])["c"]
        n = int(lengths[i])
        assert n == c.size(2)
        torch.testing.assert_close(feats[i, :n], c[0].transpose(0, 1), atol=1e-4, rtol=1e-4)


def test_unusable_audio_is_skipped_and_counted_by_the_criterion(corpus, tmp_path):
    root, _, _ = corpus
    data = tmp_path / "data"
    shutil.copytree(root / "data", data)
    lines = (data / "valid.tsv").read_text().splitlines()
    rel, samples = lines[2].split("\t")
    sf.write(tmp_path / "stereo.wav", np.zeros((int(samples), 2), dtype=np.float32), SAMPLE_RATE)
    lines[0], lines[2] = str(data), f"{tmp_path / 'stereo.wav'}\t{samples}"
    (data / "valid.tsv").write_text("\n".join(lines) + "\n")
    task = task_for(data)
    task.load_dataset("valid")
    dataset = task.dataset("valid")
    batch = dataset.collater([dataset[i] for i in range(3)])
    assert batch["id"].tolist() == [0, 2] and batch["bad_audio"] == 1
    model = W2lCtcModel(W2lCtcConfig(input="logmel", upstream=None, bert=None),
                        len(task.target_dictionary))
    _, _, log = CtcAsrCriterion(CtcAsrConfig(), task)(model.eval(), batch)
    assert log["bad_audio"] == 1 and log["nsentences"] == 2
