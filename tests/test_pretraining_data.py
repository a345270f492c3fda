"""ManifestAudioDataset and the vqw2v_pretraining task's data side: crops, padding, batching,
errors that name the manifest line and the file."""

import numpy as np
import pytest
import torch

from fairseq_vqw2v.constants import SAMPLE_RATE
from fairseq_vqw2v.data.audio_dataset import ManifestAudioDataset
from fairseq_vqw2v.data.manifest import ManifestError
from fairseq_vqw2v.tasks.pretraining import PretrainingConfig, PretrainingTask


def ramps(lengths):
    # a ramp makes every sample's position recoverable from its value
    return [(np.arange(n) / 2**16 + i / 10).astype(np.float32) for i, n in enumerate(lengths)]


def test_crop_batches_to_shortest_reproducibly_per_epoch(tmp_path, write_manifest):
    path = write_manifest(tmp_path, ramps([3000, 5000, 8000]), "train", "u")
    dataset = ManifestAudioDataset(path, SAMPLE_RATE, max_sample_size=4000, seed=3)
    batch = dataset.collater([dataset[i] for i in range(3)])
    assert batch["net_input"]["source"].shape == (3, 3000)
    assert "padding_mask" not in batch["net_input"] and batch["target"] is None
    again = dataset.collater([dataset[i] for i in range(3)])
    assert torch.equal(batch["net_input"]["source"], again["net_input"]["source"])
    starts = set()
    for epoch in range(1, 6):
        dataset.set_epoch(epoch)
        source = dataset.collater([dataset[2]])["net_input"]["source"][0]
        assert len(source) == 4000
        start = round(float(source[0] - 0.2) * 2**16)
        assert torch.allclose(source, torch.from_numpy(
            (np.arange(start, start + 4000) / 2**16 + 0.2).astype(np.float32)))
        starts.add(start)
    assert len(starts) > 1  # the crop moves between epochs


def test_padding_mask_and_full_utterances(tmp_path, write_manifest):
    path = write_manifest(tmp_path, ramps([3000, 5000, 8000]), "train", "u")
    dataset = ManifestAudioDataset(path, SAMPLE_RATE, max_sample_size=6000, pad=True)
    net_input = dataset.collater([dataset[i] for i in range(3)])["net_input"]
    assert net_input["source"].shape == (3, 6000)
    assert net_input["padding_mask"].sum(-1).tolist() == [3000, 1000, 0]
    dataset.use_full_utterances()
    net_input = dataset.collater([dataset[i] for i in range(3)])["net_input"]
    assert net_input["source"].shape == (3, 8000)
    assert (~net_input["padding_mask"]).sum(-1).tolist() == [3000, 5000, 8000]
    assert dataset.size(2) == 8000


def test_min_sample_size_skips_and_batches_keep_every_utterance(tmp_path, write_manifest):
    path = write_manifest(tmp_path, ramps([500, 3000, 5000, 8000, 4000, 6000]), "train", "u")
    dataset = ManifestAudioDataset(path, SAMPLE_RATE, min_sample_size=1000)
    assert len(dataset) == 5 and dataset.location(0).endswith("train.tsv:3")
    batches = dataset.batch_by_size(dataset.ordered_indices(), max_tokens=16000,
                                    required_batch_size_multiple=8)
    assert sorted(np.concatenate(batches).tolist()) == list(range(5))


def test_task_loads_split_and_names_bad_lines(tmp_path, write_manifest):
    write_manifest(tmp_path, ramps([3000, 5000]), "train", "u")
    task = PretrainingTask.setup_task(PretrainingConfig(data=str(tmp_path), seed=1))
    task.load_dataset("train")
    assert len(task.dataset("train")) == 2
    (tmp_path / "valid.tsv").write_text(f"{tmp_path}\nu0.wav\t3000\nu1.wav 5000\n")
    with pytest.raises(ManifestError, match=r"valid\.tsv:3: expected"):
        task.load_dataset("valid")
    with pytest.raises(ManifestError, match=r"test\.tsv"):
        task.load_dataset("test")


def test_missing_or_wrong_rate_audio_names_manifest_line_and_file(tmp_path, write_manifest):
    path = write_manifest(tmp_path, ramps([3000, 5000]), "train", "u")
    (tmp_path / "u1.wav").unlink()
    dataset = ManifestAudioDataset(path, SAMPLE_RATE)
    assert dataset[0]["source"].shape == (3000,)
    with pytest.raises(ManifestError, match=rf"train\.tsv:3: cannot read audio {tmp_path}/u1\.wav"):
        dataset[1]
    path = write_manifest(tmp_path, ramps([3000]), "valid", "u", sample_rate=8000)
    with pytest.raises(ManifestError, match=r"valid\.tsv:2: .*u0\.wav has sample rate 8000"):
        ManifestAudioDataset(path, SAMPLE_RATE)[0]


def test_padded_batches_match_fairseq_file_audio_dataset(tmp_path, write_manifest):
    from fairseq.data import FileAudioDataset

    path = write_manifest(tmp_path, ramps([3000, 5000, 8000]), "train", "u")
    ours = ManifestAudioDataset(path, SAMPLE_RATE, pad=True, normalize=True)
    reference = FileAudioDataset(path, SAMPLE_RATE, pad=True, normalize=True)
    assert list(ours.sizes) == list(reference.sizes)
    a = ours.collater([ours[i] for i in range(3)])
    b = reference.collater([reference[i] for i in range(3)])
    assert torch.equal(a["net_input"]["source"], b["net_input"]["source"])
    assert torch.equal(a["net_input"]["padding_mask"], b["net_input"]["padding_mask"])
    assert torch.equal(a["id"], b["id"])
