"""Fixture helpers shared by the manifest tests: short random waveforms, in-process CLI runs."""

import os

import numpy as np
import soundfile as sf

from fairseq_vqw2v.constants import SAMPLE_RATE
from manifests.common import run_cli


def tone(seconds=0.2, rate=SAMPLE_RATE, seed=0):
    """``seconds`` of low-level noise at ``rate`` Hz (float32, T)."""
    return (np.random.RandomState(seed).randn(int(seconds * rate)) * 0.1).astype(np.float32)


def write_audio(path, seconds=0.2, seed=0, **kwargs):
    """Writes a mono file at the sample rate (folders created); returns its path as a string."""
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    sf.write(str(path), tone(seconds, seed=seed), SAMPLE_RATE, **kwargs)
    return str(path)


def run(main, argv, capsys):
    """Runs a prep script in-process as its CLI does: (exit status, stdout, stderr)."""
    try:
        run_cli(main, argv)
        status = 0
    except SystemExit as e:
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err
