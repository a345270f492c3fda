"""Helpers for the acoustic-model tests: a tiny corpus whose letters are audible, and tiny
upstream checkpoints (vq_wav2vec, unit_bert) saved in fairseq's checkpoint layout."""

import os

import numpy as np
import soundfile as sf
import torch

from _checkpoint_util import save_vq_checkpoint
from fairseq_vqw2v.constants import SAMPLE_RATE
from fairseq_vqw2v.interop.roberta import unit_bert_checkpoint
from fairseq_vqw2v.models.unit_bert import UnitBertConfig, UnitBertModel
from fairseq_vqw2v.models.vq_wav2vec import VqWav2VecModel, arch_config

WORDS = ["bad", "cab", "dab", "bed", "fed", "deaf", "face", "cafe", "bead", "fade"]
VQ_VARS = 8


def letter_tone(letter, rng):
    """70-110 ms of two sines whose frequencies identify the letter."""
    k = ord(letter) - ord("a")
    n = int(rng.uniform(0.07, 0.11) * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    envelope = np.sin(np.pi * np.arange(n) / n) ** 0.5
    return envelope * (np.sin(2 * np.pi * (300 + 150 * k) * t) + 0.5 * np.sin(2 * np.pi * (2400 - 120 * k) * t))


def sentence_audio(words, rng):
    gap = np.zeros(int(0.06 * SAMPLE_RATE))
    pieces = [gap]
    for word in words:
        pieces += [letter_tone(c, rng) for c in word] + [gap]
    audio = 0.3 * np.concatenate(pieces)
    return (audio + 0.005 * rng.standard_normal(len(audio))).astype(np.float32)


def write_letter_corpus(root, splits=(("train", 24), ("valid", 6), ("test", 6)), seed=0):
    """``root/{split}.tsv`` + ``.wrd``/``.ltr``/``.phn`` for sentences of 2-4 words of
    :data:`WORDS`; the phones are the letters mapped onto TIMIT phone names. Returns sentences."""
    from fairseq_vqw2v.data.text_norm import words_to_letters

    phones = dict(zip("abcdef", ["ae", "b", "k", "d", "eh", "f"]))
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "audio"), exist_ok=True)
    sentences = {}
    for split, count in splits:
        rows, wrd = [], []
        for i in range(count):
            words = list(rng.choice(WORDS, size=int(rng.integers(2, 5))))
            audio = sentence_audio(words, rng)
            rel = f"audio/{split}{i}.wav"
            sf.write(os.path.join(root, rel), audio, SAMPLE_RATE)
            rows.append(f"{rel}\t{len(audio)}")
            wrd.append(" ".join(words))
        with open(os.path.join(root, f"{split}.tsv"), "w") as f:
            f.write(os.path.abspath(root) + "\n" + "\n".join(rows) + "\n")
        labels = {
            "wrd": wrd,
            "ltr": [words_to_letters(s) for s in wrd],
            "phn": [" ".join(phones[c] for c in s.replace(" ", "")) for s in wrd],
        }
        for ext, lines in labels.items():
            with open(os.path.join(root, f"{split}.{ext}"), "w") as f:
                f.write("\n".join(lines) + "\n")
        sentences[split] = wrd
    return sentences


def write_upstreams(root, seed=0):
    """Saves ``root/vq.pt`` (a tiny Gumbel vq_wav2vec, V=8) and ``root/bert/bert.pt`` (a tiny
    unit_bert over all 64 units, dictionary beside it). Returns their paths."""
    torch.manual_seed(seed)
    vq_cfg = arch_config("vq_wav2vec_tiny", conv_feature_layers="[(32, 10, 5), (32, 8, 4), (32, 4, 2), (32, 4, 2), (32, 4, 2)]",
                         conv_aggregator_layers="[(32, 2, 1), (32, 3, 1)]", vq_vars=VQ_VARS)
    vq = VqWav2VecModel(vq_cfg)
    vq_path = save_vq_checkpoint(os.path.join(root, "vq.pt"), vq, root)

    bert_dir = os.path.join(root, "bert")
    os.makedirs(bert_dir, exist_ok=True)
    tokens = [f"{a}-{b}" for a in range(VQ_VARS) for b in range(VQ_VARS)]
    with open(os.path.join(bert_dir, "dict.txt"), "w") as f:
        f.write("".join(f"{t} 1\n" for t in tokens))
    cfg = UnitBertConfig(encoder_layers=1, encoder_embed_dim=32, encoder_ffn_embed_dim=64,
                         encoder_attention_heads=2, max_positions=64, dropout=0.0)
    bert = UnitBertModel(cfg, len(tokens) + 5, padding_idx=1)
    bert_path = os.path.join(bert_dir, "bert.pt")
    torch.save(unit_bert_checkpoint(cfg, bert.state_dict(), bert_dir), bert_path)
    return vq_path, bert_path


def corpus_with_upstreams(root, splits):
    """:func:`write_letter_corpus` in ``root/data`` and :func:`write_upstreams` in ``root``:
    (root, vq path, bert path)."""
    write_letter_corpus(str(root / "data"), splits=splits)
    vq, bert = write_upstreams(str(root))
    return root, vq, bert


def train_args(data, save_dir, max_update, *extra):
    """fairseq-train's arguments (without ``--user-dir`` and ``--cpu``) for a tiny letter AM."""
    return [data, "--task", "vqw2v_asr", "--arch", "w2l_ctc_tiny", "--criterion", "ctc_asr",
            "--num-workers", "0", "--seed", "1", "--optimizer", "adam", "--lr", "3e-3",
            "--max-tokens", "4000", "--max-update", max_update, "--save-dir", save_dir,
            "--no-epoch-checkpoints", "--log-format", "json", "--log-interval", "1", *extra]
