"""Kaldi-compatible log-mel filterbank features, batched and GPU-capable."""

import math
from typing import Optional, Tuple

import torch
import torch.nn as nn

from fairseq_vqw2v.constants import FRAME_STRIDE, SAMPLE_RATE
from fairseq_vqw2v.modules.masked_group_norm import frame_mask

FRAME_SHIFT_MS = 1000.0 * FRAME_STRIDE / SAMPLE_RATE
"""The default hop: the units' and conv encoder's 10 ms frames, so log-mel frames align with them."""

INT16_SCALE = 32768.0
"""Kaldi's ``compute-fbank`` reads 16-bit PCM as int16 values; float audio in [-1, 1] times this."""

FLOAT32_EPS = torch.finfo(torch.float32).eps
"""Kaldi floors mel energies at ``std::numeric_limits<float>::epsilon()`` before the log."""


def kaldi_mel_scale(freq: torch.Tensor) -> torch.Tensor:
    """Kaldi's (HTK) mel scale ``1127 ln(1 + f / 700)``."""
    return 1127.0 * torch.log1p(freq / 700.0)


def kaldi_mel_banks(num_bins: int, padded_window: int, sample_rate: float, low_freq: float,
                    high_freq: float) -> torch.Tensor:
    """Kaldi's triangular mel filters (``MelBanks``, no VTLN) as a matrix.

    Returns:
        Tensor: Shape `padded_window // 2 + 1 x num_bins`; the Nyquist row is zero, as Kaldi only
        weights the first ``padded_window // 2`` FFT bins.
    """
    nyquist = 0.5 * sample_rate
    if high_freq <= 0:
        high_freq += nyquist
    if not 0 <= low_freq < high_freq <= nyquist:
        raise ValueError(f"mel bins need 0 <= low_freq < high_freq <= {nyquist}, "
                         f"got low_freq={low_freq}, high_freq={high_freq}")
    mel_low = kaldi_mel_scale(torch.tensor(low_freq, dtype=torch.float64))
    mel_high = kaldi_mel_scale(torch.tensor(high_freq, dtype=torch.float64))
    delta = (mel_high - mel_low) / (num_bins + 1)
    bins = torch.arange(num_bins, dtype=torch.float64).unsqueeze(0)  # 1 x M
    left, center, right = mel_low + bins * delta, mel_low + (bins + 1) * delta, mel_low + (bins + 2) * delta

    num_fft_bins = padded_window // 2
    freqs = torch.arange(num_fft_bins, dtype=torch.float64) * (sample_rate / padded_window)
    mel = kaldi_mel_scale(freqs).unsqueeze(1)  # F x 1
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    weights = torch.where(mel <= center, up, down)
    weights = torch.where((mel > left) & (mel < right), weights, torch.zeros_like(weights))  # F x M
    return torch.cat([weights, weights.new_zeros(1, num_bins)]).float()


def povey_window(length: int) -> torch.Tensor:
    """Kaldi's default window: a Hann window raised to the power 0.85 (non-periodic)."""
    n = torch.arange(length, dtype=torch.float64)
    return (0.5 - 0.5 * torch.cos(2 * math.pi * n / (length - 1))).pow(0.85).float()


class LogMelFilterbank(nn.Module):
    """Log-mel filterbank as Kaldi's ``compute-fbank`` computes it, with optional per-utterance
    mean and variance normalisation.

    Matches ``compute-fbank --dither=0`` (kaldi-native-fbank's ``FbankOptions`` with dither 0):
    povey window, snip_edges (frame ``t`` covers samples ``[t * shift, t * shift + window)``), DC
    offset removal, pre-emphasis, FFT padded to a power of two, power spectrum, triangular bins on
    Kaldi's mel scale, ``log(max(energy, float32 eps))``, no energy coefficient. Audio in [-1, 1]
    (as soundfile reads it) is multiplied by ``input_scale`` first: Kaldi's binaries see int16
    sample values, kaldi-native-fbank and ``torchaudio.compliance.kaldi`` apply no scaling of their
    own, so callers of those pass ``audio * 32768`` to get Kaldi's numbers. With normalisation on,
    the scale only matters where energies hit the floor.

    Frames depend only on their own samples, so padding a batch never changes an utterance's
    frames; mean and variance use each utterance's valid frames only. Padded output frames are 0.

    Args:
        sample_rate (int, optional): Sample rate in Hz. (Default: ``16000``)
        num_mel_bins (int, optional): Number of mel bins. (Default: ``80``)
        frame_length_ms (float, optional): Window length in milliseconds. (Default: ``25``)
        frame_shift_ms (float, optional): Hop in milliseconds. (Default: ``10``)
        low_freq (float, optional): Lower edge of the first mel bin in Hz. (Default: ``20``)
        high_freq (float, optional): Upper edge of the last mel bin in Hz; ``<= 0`` is an offset
            from the Nyquist frequency, as in Kaldi. (Default: ``0``)
        preemphasis (float, optional): Pre-emphasis coefficient. (Default: ``0.97``)
        remove_dc_offset (bool, optional): Subtract each frame's mean first. (Default: ``True``)
        input_scale (float, optional): Factor applied to the waveform. (Default: ``32768``)
        normalize (bool, optional): Per-utterance, per-bin mean/variance normalisation over valid
            frames. (Default: ``True``)
        norm_eps (float, optional): Added to the variance before the square root. (Default: ``1e-5``)
    """

    def __init__(self, sample_rate: int = SAMPLE_RATE, num_mel_bins: int = 80,
                 frame_length_ms: float = 25.0, frame_shift_ms: float = FRAME_SHIFT_MS,
                 low_freq: float = 20.0, high_freq: float = 0.0,
                 preemphasis: float = 0.97, remove_dc_offset: bool = True,
                 input_scale: float = INT16_SCALE, normalize: bool = True, norm_eps: float = 1e-5):
        super().__init__()
        # Kaldi truncates the millisecond options to whole samples the same way
        self.window_size = int(sample_rate * 0.001 * frame_length_ms)
        self.window_shift = int(sample_rate * 0.001 * frame_shift_ms)
        if self.window_size < 2 or self.window_shift < 1:
            raise ValueError(f"frame_length_ms={frame_length_ms} / frame_shift_ms={frame_shift_ms} "
                             f"give fewer than 2 / 1 samples at {sample_rate} Hz")
        self.padded_window = 1 << (self.window_size - 1).bit_length()
        self.num_mel_bins = num_mel_bins
        self.preemphasis = preemphasis
        self.remove_dc_offset = remove_dc_offset
        self.input_scale = input_scale
        self.normalize = normalize
        self.norm_eps = norm_eps
        # derived from the options, so kept out of checkpoints
        self.register_buffer("window", povey_window(self.window_size), persistent=False)
        self.register_buffer(
            "mel_banks",
            kaldi_mel_banks(num_mel_bins, self.padded_window, sample_rate, low_freq, high_freq),
            persistent=False,
        )

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frame counts with snip_edges: ``1 + (n - window) // shift``, 0 below one window.

        Args:
            lengths (Tensor): Shape `B`, valid samples per utterance.

        Returns:
            Tensor: Shape `B`, valid frames per utterance (int64).
        """
        lengths = lengths.long()
        frames = torch.div(lengths - self.window_size, self.window_shift, rounding_mode="floor") + 1
        return frames.clamp(min=0)

    def forward(self, source: torch.Tensor,
                lengths: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            source (Tensor): Shape `B x T`, float waveform in [-1, 1], zero or anything past
                each utterance's length.
            lengths (Tensor or None): Shape `B`, valid samples per utterance; ``None`` means all
                ``T``.

        Returns:
            (Tensor, Tensor):
            Tensor
                Shape `B x T' x num_mel_bins`, float32 log-mel features, 0 on padded frames.
            Tensor
                Shape `B`, valid frames per utterance, ``output_lengths(lengths)``.
        """
        bsz, tsz = source.shape
        if lengths is None:
            lengths = torch.full((bsz,), tsz, dtype=torch.long, device=source.device)
        frame_lengths = self.output_lengths(lengths)
        num_frames = int(self.output_lengths(torch.tensor([tsz])).item())
        if num_frames == 0:
            return source.new_zeros(bsz, 0, self.num_mel_bins, dtype=torch.float32), frame_lengths

        waveform = source.float() * self.input_scale
        frames = waveform.unfold(1, self.window_size, self.window_shift)  # B x T' x W
        if self.remove_dc_offset:
            frames = frames - frames.mean(dim=-1, keepdim=True)
        # Kaldi pre-emphasises the first sample against itself
        frames = torch.cat(
            [frames[..., :1] * (1 - self.preemphasis), frames[..., 1:] - self.preemphasis * frames[..., :-1]],
            dim=-1,
        )
        # .float(): the buffers are halved with a model trained in fairseq's --fp16
        spectrum = torch.fft.rfft(frames * self.window.float(), n=self.padded_window)  # B x T' x (P/2 + 1)
        power = spectrum.real.square() + spectrum.imag.square()
        feats = torch.matmul(power, self.mel_banks.float()).clamp(min=FLOAT32_EPS).log()  # B x T' x M

        mask = frame_mask(frame_lengths, num_frames).unsqueeze(-1)  # B x T' x 1
        if self.normalize:
            count = frame_lengths.clamp(min=1).to(feats.dtype).view(bsz, 1, 1)
            mean = (feats * mask).sum(dim=1, keepdim=True) / count  # B x 1 x M
            centered = feats - mean
            var = (centered.square() * mask).sum(dim=1, keepdim=True) / count
            feats = centered * torch.rsqrt(var + self.norm_eps)
        return feats.masked_fill(~mask, 0.0), frame_lengths
