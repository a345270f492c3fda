"""LogMelFilterbank against kaldi-native-fbank, padding invariance and per-utterance normalisation."""

import math

import kaldi_native_fbank as knf
import numpy as np
import pytest
import torch

from _pretraining_util import synth_utterance
from fairseq_vqw2v.constants import SAMPLE_RATE
from fairseq_vqw2v.modules.logmel import INT16_SCALE, LogMelFilterbank


def speech(seed, seconds):
    return synth_utterance(np.random.default_rng(seed), seconds)


def knf_fbank(audio):
    """Reference features from kaldi-native-fbank with compute-fbank's defaults, dither 0."""
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = SAMPLE_RATE
    opts.frame_opts.dither = 0.0
    opts.frame_opts.snip_edges = True
    opts.mel_opts.num_bins = 80
    fbank = knf.OnlineFbank(opts)
    # Kaldi's compute-fbank sees int16 sample values; kaldi-native-fbank scales nothing itself
    fbank.accept_waveform(SAMPLE_RATE, (audio * INT16_SCALE).tolist())
    fbank.input_finished()
    return np.stack([np.asarray(fbank.get_frame(i)) for i in range(fbank.num_frames_ready)])


@pytest.mark.parametrize("kind", ["speech", "noise"])
def test_matches_kaldi_native_fbank(kind, noise):
    audio = speech(0, 1.23) if kind == "speech" else noise(1.23, seed=0)
    reference = knf_fbank(audio)
    feats, lengths = LogMelFilterbank(normalize=False)(torch.from_numpy(audio).unsqueeze(0))
    assert feats.shape == (1, reference.shape[0], 80) and lengths.tolist() == [reference.shape[0]]
    diff = np.abs(feats[0].numpy() - reference)
    loud = reference > reference.max(axis=1, keepdims=True) - 10  # within 10 nats of the frame's peak
    print(f"{kind}: max |ours - knf| = {diff.max():.2e} (loud bins {diff[loud].max():.2e}) "
          f"over log values in [{reference.min():.1f}, {reference.max():.1f}]")
    # Both sides run in float32: the FFT's rounding error is ~eps relative to the frame's total
    # energy E, so a bin of energy e is off by ~eps * sqrt(E / e) relative, i.e. ~6e-8 * e^(10/2)
    # ~ 1e-5 for bins within 10 nats of the peak and up to ~1e-3 for bins 20 nats below it
    # (measured: 9e-5 and 5e-4 on the speech-like audio).
    assert diff[loud].max() < 2e-4
    assert diff.max() < 1e-3


def test_input_scale_is_int16():
    """The default scale is Kaldi's int16 convention: the log energies shift by ln(32768^2)."""
    audio = torch.from_numpy(speech(1, 0.5)).unsqueeze(0)
    int16, _ = LogMelFilterbank(normalize=False)(audio)
    unit, _ = LogMelFilterbank(normalize=False, input_scale=1.0)(audio)
    torch.testing.assert_close(int16 - unit, torch.full_like(unit, 2 * math.log(INT16_SCALE)),
                               rtol=0, atol=1e-3)


def test_output_lengths_follow_snip_edges():
    fbank = LogMelFilterbank()
    samples = torch.tensor([0, 399, 400, 401, 559, 560, 16000])
    assert fbank.output_lengths(samples).tolist() == [0, 0, 1, 1, 1, 2, 98]


def test_shorter_than_one_window():
    feats, lengths = LogMelFilterbank()(torch.zeros(2, 300), torch.tensor([300, 100]))
    assert feats.shape == (2, 0, 80) and lengths.tolist() == [0, 0]


@pytest.mark.parametrize("normalize", [False, True])
def test_batch_and_single_utterance_agree(normalize, noise):
    fbank = LogMelFilterbank(normalize=normalize)
    utterances = [speech(2, 1.0), speech(3, 0.61), noise(0.3, seed=4)]
    lengths = torch.tensor([len(u) for u in utterances])
    batch = torch.full((3, int(lengths.max())), 0.5)  # non-zero padding must not leak either
    for b, u in enumerate(utterances):
        batch[b, :len(u)] = torch.from_numpy(u)
    feats, frames = fbank(batch, lengths)
    assert frames.tolist() == [98, 59, 28]
    assert feats.shape == (3, 98, 80)
    for b, u in enumerate(utterances):
        single, single_frames = fbank(torch.from_numpy(u).unsqueeze(0))
        n = single_frames.item()
        assert n == frames[b].item()
        torch.testing.assert_close(feats[b, :n], single[0], rtol=0, atol=1e-4)
        assert not feats[b, n:].any()


def test_normalised_features_have_zero_mean_unit_variance(noise):
    utterances = [speech(5, 0.8), noise(0.45, seed=6)]
    lengths = torch.tensor([len(u) for u in utterances])
    batch = torch.zeros(2, int(lengths.max()))
    for b, u in enumerate(utterances):
        batch[b, :len(u)] = torch.from_numpy(u)
    feats, frames = LogMelFilterbank()(batch, lengths)
    for b, n in enumerate(frames.tolist()):
        valid = feats[b, :n].double()  # T x 80
        assert valid.mean(dim=0).abs().max() < 1e-5
        assert (valid.var(dim=0, unbiased=False) - 1).abs().max() < 1e-3
