"""Fixtures shared by the test files: waveforms written as audio files with the manifest that
lists them (at the project's own sample rate, ``fairseq_vqw2v.constants.SAMPLE_RATE``), and the
one way the tests run fairseq's binaries."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from fairseq_vqw2v.constants import SAMPLE_RATE

from _fairseq_cli import run_fairseq


def _write_manifest(root, waveforms, split="test", prefix="", counts=None, sample_rate=SAMPLE_RATE):
    root = Path(root)
    rows = []
    for i, wav in enumerate(waveforms):
        name = f"{prefix}{i}.wav"
        # float samples read back exactly, so a test can compare what a dataset reads
        sf.write(root / name, wav, sample_rate, subtype="FLOAT")
        rows.append(f"{name}\t{len(wav) if counts is None else counts[i]}")
    path = root / f"{split}.tsv"
    path.write_text(f"{root}\n" + "".join(row + "\n" for row in rows))
    return str(path)


def _noise(seconds, seed=0):
    samples = int(seconds * SAMPLE_RATE)
    return (0.1 * np.random.default_rng(seed).standard_normal(samples)).astype(np.float32)


@pytest.fixture(scope="session")
def write_manifest():
    """``write_manifest(root, waveforms, split="test", prefix="", counts=None,
    sample_rate=SAMPLE_RATE)``: writes waveform i (T, or T x C for C channels) to
    ``root/{prefix}{i}.wav`` and ``root/{split}.tsv`` listing them (with ``counts`` as the
    sample counts instead of the true ones, for tests of wrong manifests); returns the tsv path."""
    return _write_manifest


@pytest.fixture(scope="session")
def noise():
    """``noise(seconds, seed=0)``: white noise of standard deviation 0.1 at the sample rate."""
    return _noise


@pytest.fixture(scope="session")
def fairseq_cli():
    """``fairseq_cli(tool, *args, plugin=True, cpu=True, threads=1, timeout=600, env=None)``: see
    :func:`_fairseq_cli.run_fairseq`."""
    return run_fairseq
