"""Builds the embedded spoken-English corpus with Debian's flite: deterministic, no download.

    python -m manifests.synth --out DIR [--hours 1.0] [--seed 1] [--jobs N] [--lm-words N] \
        [--unlabeled-hours H]

Sentences come from ``manifests.synth_text`` (WordNet, KJV Bible, fortunes; normalised to
lowercase letters and apostrophes, 4-20 words: utterances of 1-10 s, 3.3 s on average). Each
utterance is read by one of flite's four 16 kHz voices (kal16, awb, rms, slt) with a random
duration stretch and pitch shift (``f0_shift``; rms ignores every pitch setting, so it varies in
speed only). The voice settings of an utterance depend only on (seed, split, index), so a corpus
is a prefix of any larger one with the same seed, and ``--jobs`` does not change the result.

Splits: the shuffled sentences are dealt into three disjoint streams (1 in 24 to test, 1 in 24 to
valid, the rest to train); each split reads its stream until it holds the asked audio time: train
``--hours``, valid and test ``--hours / 12`` each (at least one utterance). Valid and test use the
same voices as train (four voices are too few to hold one out), but never a train sentence; the
LM text excludes every valid and test sentence.

``--unlabeled-hours H`` adds audio for the self-supervised stages only, as the paper pretrained on
far more audio than its acoustic models had labeled: H more hours read from train's stream after
its last labeled sentence (``wav/unlabeled/``), and a split ``pretrain`` that lists train's audio
and those hours. The labeled splits are the same files as without it.

Layout written under DIR::

    wav/{split}/{index:06d}-{voice}.wav      16 kHz mono, 16-bit
    {split}.tsv .wrd .ltr .phn               fairseq manifest and aligned labels (train/valid/test,
                                             and pretrain with --unlabeled-hours: its labels serve
                                             the unit report; no acoustic model reads them)
    {split}.align                            phone alignment: per manifest line, flite's segments
                                             ``phone:end_seconds`` (``pau:0.184 dh:0.233 ...``)
    lm/lm.txt                                one normalised sentence per line (all sources, about
                                             2.4 M words, or the first --lm-words words)
    lm/lexicon.txt                           word <tab> spelling (``h e l l o |``)
    corpus.json                              parameters and sizes; written last, marks completion

``.phn`` holds flite's own phones (``-psdur``, 40 ARPAbet phones, ``pau`` dropped). ``.align`` keeps
every segment flite printed, ``pau`` included, with its end time (seconds from the start, 3
decimals; a segment starts where the previous one ends, the first at 0):
``fairseq_vqw2v.unit_quality`` turns them into one phone per 10 ms frame of any front end. The
times are those of the audio (speech on- and offsets measured on energy agree within 10 ms),
except that the diphone voice kal16 cuts its final ``pau`` short: its wav ends up to 0.13 s before
the last end time. Running again with the same parameters on a complete corpus does nothing.
"""

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, wait
from typing import List, NamedTuple, Tuple

import soundfile as sf
from tqdm import tqdm

from fairseq_vqw2v.constants import PRETRAIN_SPLIT, SAMPLE_RATE, SPLITS
from fairseq_vqw2v.data.alignments import format_alignment
from fairseq_vqw2v.data.manifest import write_split
from fairseq_vqw2v.data.text_norm import words_to_letters
from manifests.synth_text import TextSourceError, load_sentences

VOICES = ("kal16", "awb", "rms", "slt")
# Measured: rms gives the same audio whatever f0_shift / int_f0_target_mean say.
PITCH_VOICES = frozenset({"kal16", "awb", "slt"})
STRETCH_RANGE = (0.85, 1.2)
F0_SHIFT_RANGE = (0.85, 1.2)
MIN_WORDS, MAX_WORDS = 4, 20
UNLABELED = "unlabeled"
SPLIT_FILES = ("tsv", "wrd", "ltr", "phn", "align")
"""The files ``{split}.{ext}`` every manifest split has."""
HELD_OUT_EVERY = 24
EVAL_HOURS_FRACTION = 1 / 12
SILENCE_PHONE = "pau"
FLITE_PHONES = frozenset(
    "aa ae ah ao aw ax ay b ch d dh eh er ey f g hh ih iy jh k l m n ng ow oy p r s sh t th uh uw "
    "v w y z zh".split()
)
"""flite's US English phones besides ``pau``: the 39 of the CMU dictionary plus ``ax``."""
FORMAT_VERSION = 2
"""2: adds ``{split}.align``; a corpus of an older version is rebuilt."""
# First guess of seconds per utterance, to size the first batch of a split.
SECONDS_PER_UTTERANCE_GUESS = 3.5


class SynthError(RuntimeError):
    """flite is missing or failed on a sentence; the message says which and how to fix it."""


FLITE_MISSING = "flite not found: run `bash scripts/install_system_deps.sh` (or `make setup`)"


class Utterance(NamedTuple):
    split: str
    index: int
    text: str
    voice: str
    stretch: float
    f0_shift: float

    @property
    def relpath(self):
        return f"{self.split}/{self.index:06d}-{self.voice}.wav"


class Synthesized(NamedTuple):
    utterance: Utterance
    num_samples: int
    segments: List[Tuple[str, float]]
    """flite's (phone, end seconds) segments, ``pau`` included."""

    @property
    def phones(self):
        return [p for p, _ in self.segments if p != SILENCE_PHONE]


def voice_settings(seed, split, index):
    """Returns (voice, duration stretch, f0 shift) of one utterance: a pure function of its
    position, so results do not depend on scheduling (str seeds hash with sha512, not hash())."""
    rng = random.Random(f"{seed}/{split}/{index}")
    voice = rng.choice(VOICES)
    stretch = round(rng.uniform(*STRETCH_RANGE), 2)
    f0_shift = round(rng.uniform(*F0_SHIFT_RANGE), 2)
    return voice, stretch, f0_shift if voice in PITCH_VOICES else 1.0


def flite_command(utt, wav_path):
    cmd = ["flite", "-voice", utt.voice, "--setf", f"duration_stretch={utt.stretch}"]
    if utt.voice in PITCH_VOICES:
        cmd += ["--setf", f"f0_shift={utt.f0_shift}"]
    return cmd + ["-psdur", "-t", utt.text, "-o", wav_path]


def parse_segments(psdur_output):
    """``pau:0.184 dh:0.233 ...`` (flite ``-psdur``) -> [(phone, end seconds)], ``pau`` included."""
    segments = []
    for token in psdur_output.split():
        phone, _, end = token.partition(":")
        segments.append((phone, float(end)))
    return segments


def parse_phones(psdur_output):
    """``pau:0.184 dh:0.233 ...`` (flite ``-psdur``) -> phones without silence."""
    return [p for p, _ in parse_segments(psdur_output) if p != SILENCE_PHONE]


def synthesize(utt, wav_root):
    """Writes one utterance's wav under wav_root and returns its length and phones."""
    wav_path = os.path.join(wav_root, utt.relpath)
    try:
        proc = subprocess.run(flite_command(utt, wav_path), capture_output=True, text=True)
    except FileNotFoundError:
        raise SynthError(FLITE_MISSING)
    if proc.returncode != 0:
        raise SynthError(f"flite failed on {wav_path} ({utt.text!r}): {proc.stderr.strip()}")
    info = sf.info(wav_path)
    if info.samplerate != SAMPLE_RATE:
        raise SynthError(f"{wav_path}: flite voice {utt.voice} wrote {info.samplerate} Hz")
    result = Synthesized(utt, info.frames, parse_segments(proc.stdout))
    if not result.phones:
        raise SynthError(f"{wav_path}: flite printed no phones for {utt.text!r}")
    return result


def deal_streams(speech_sentences):
    """Deals shuffled sentences into disjoint per-split streams (1/24 test, 1/24 valid)."""
    streams = {split: [] for split in SPLITS}
    for k, sentence in enumerate(speech_sentences):
        slot = k % HELD_OUT_EVERY
        streams["test" if slot == 0 else "valid" if slot == 1 else "train"].append(sentence)
    return streams


def synthesize_split(executor, jobs, split, stream, target_seconds, seed, wav_root, bar):
    """Synthesizes the shortest prefix of stream whose audio reaches target_seconds.

    Works in batches sized from the mean length so far; utterances made past the cut are
    discarded, so the result does not depend on batch sizes or the number of workers.
    """
    os.makedirs(os.path.join(wav_root, split), exist_ok=True)
    done, seconds = [], 0.0
    while seconds < target_seconds:
        mean = seconds / len(done) if done else SECONDS_PER_UTTERANCE_GUESS
        batch = math.ceil((target_seconds - seconds) / mean * 1.05) + jobs
        start = len(done)
        if start >= len(stream):
            raise SynthError(f"{split}: ran out of sentences after {len(done)} utterances")
        utterances = [
            Utterance(split, i, stream[i], *voice_settings(seed, split, i))
            for i in range(start, min(start + batch, len(stream)))
        ]
        futures = [executor.submit(synthesize, utt, wav_root) for utt in utterances]
        for future in futures:
            if seconds >= target_seconds:
                future.cancel()
                continue
            result = future.result()
            done.append(result)
            length = result.num_samples / SAMPLE_RATE
            seconds += length
            bar.update(min(length, max(0.0, bar.total - bar.n)))
        # Runs past the cut still write their wavs: let them finish before the clean-up below.
        wait(futures)
    keep = {r.utterance.relpath for r in done}
    for name in os.listdir(os.path.join(wav_root, split)):
        if f"{split}/{name}" not in keep:
            os.remove(os.path.join(wav_root, split, name))
    return done


def write_text(path, lines):
    """Writes lines atomically (temp file, then rename)."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
    os.replace(tmp, path)


def lm_sentences(shuffled, held_out, max_words):
    """The LM text: every sentence but the held-out ones, the first max_words words if > 0."""
    lines, words = [], 0
    for sentence in shuffled:
        if sentence in held_out:
            continue
        if max_words and words >= max_words:
            break
        lines.append(sentence)
        words += sentence.count(" ") + 1
    return lines, words


def lexicon_lines(lines):
    """fairseq / flashlight lexicon: ``word<tab>w o r d |`` for every word of lines, sorted."""
    vocab = sorted({w for line in lines for w in line.split()})
    return [f"{w}\t{words_to_letters(w)}" for w in vocab]


def written_splits(unlabeled_hours):
    """The manifest splits a corpus holds."""
    return SPLITS + ((PRETRAIN_SPLIT,) if unlabeled_hours else ())


def wav_counts(splits_meta):
    """Files expected in each ``wav/`` folder: the pretrain split's are train's and unlabeled's."""
    counts = {s: splits_meta[s]["utterances"] for s in SPLITS}
    if PRETRAIN_SPLIT in splits_meta:
        counts[UNLABELED] = splits_meta[PRETRAIN_SPLIT]["utterances"] - counts["train"]
    return counts


def is_complete(out, params):
    """True if out holds a finished corpus built with exactly these parameters."""
    try:
        with open(os.path.join(out, "corpus.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return False
    splits = written_splits(params.get("unlabeled_hours"))
    if meta.get("params") != params or set(meta.get("splits", ())) != set(splits):
        return False
    for split in splits:
        for ext in SPLIT_FILES:
            if not os.path.exists(os.path.join(out, f"{split}.{ext}")):
                return False
    for folder, expected in wav_counts(meta["splits"]).items():
        wav_dir = os.path.join(out, "wav", folder)
        if not os.path.isdir(wav_dir) or len(os.listdir(wav_dir)) != expected:
            return False
    return all(os.path.exists(os.path.join(out, "lm", n)) for n in ("lm.txt", "lexicon.txt"))


def build(out, hours=1.0, seed=1, jobs=None, lm_words=0, unlabeled_hours=0.0):
    """Builds (or confirms) the corpus in out and returns the corpus.json contents."""
    if hours <= 0:
        raise ValueError(f"--hours must be positive, got {hours}")
    if unlabeled_hours < 0:
        raise ValueError(f"--unlabeled-hours must not be negative, got {unlabeled_hours}")
    params = {"hours": hours, "seed": seed, "lm_words": lm_words, "version": FORMAT_VERSION}
    if unlabeled_hours:  # absent otherwise, so that corpora built before the option stay complete
        params["unlabeled_hours"] = unlabeled_hours
    out = os.path.abspath(out)
    if is_complete(out, params):
        with open(os.path.join(out, "corpus.json")) as f:
            meta = json.load(f)
        meta["skipped"] = True
        return meta
    if shutil.which("flite") is None:
        raise SynthError(FLITE_MISSING)
    os.makedirs(os.path.join(out, "lm"), exist_ok=True)
    # A rebuild must never look complete until it is.
    if os.path.exists(os.path.join(out, "corpus.json")):
        os.remove(os.path.join(out, "corpus.json"))
    if not unlabeled_hours:  # an earlier build's unlabeled audio would be stale
        shutil.rmtree(os.path.join(out, "wav", UNLABELED), ignore_errors=True)
        for ext in SPLIT_FILES:
            if os.path.exists(os.path.join(out, f"{PRETRAIN_SPLIT}.{ext}")):
                os.remove(os.path.join(out, f"{PRETRAIN_SPLIT}.{ext}"))
    start = time.time()

    sentences, source_counts = load_sentences()
    random.Random(seed).shuffle(sentences)
    speech = [s for s in sentences if MIN_WORDS <= s.count(" ") + 1 <= MAX_WORDS]
    streams = deal_streams(speech)
    targets = {
        "train": hours * 3600,
        "valid": hours * 3600 * EVAL_HOURS_FRACTION,
        "test": hours * 3600 * EVAL_HOURS_FRACTION,
        UNLABELED: unlabeled_hours * 3600,
    }

    wav_root = os.path.join(out, "wav")
    jobs = jobs or os.cpu_count() or 1
    synth_start, cpu_start = time.time(), os.times()
    results = {}
    with ThreadPoolExecutor(jobs) as executor, tqdm(
        total=round(sum(targets.values()), 1), unit="s", desc="synthesizing audio", unit_scale=True
    ) as bar:
        for split in SPLITS:
            results[split] = synthesize_split(
                executor, jobs, split, streams[split], targets[split], seed, wav_root, bar
            )
        if unlabeled_hours:
            after_train = streams["train"][len(results["train"]):]
            results[UNLABELED] = synthesize_split(
                executor, jobs, UNLABELED, after_train, targets[UNLABELED], seed, wav_root, bar
            )
            results[PRETRAIN_SPLIT] = results["train"] + results.pop(UNLABELED)
    synth_seconds = time.time() - synth_start
    # flite's time counts as the children's; the first four fields are user/system, self/children.
    synth_cpu = sum(e - s for e, s in zip(os.times()[:4], cpu_start[:4]))

    splits_meta = {}
    for split in written_splits(unlabeled_hours):
        done = results[split]
        texts = [r.utterance.text for r in done]
        write_split(
            out,
            split,
            wav_root,
            [(r.utterance.relpath, r.num_samples) for r in done],
            labels={
                "wrd": texts,
                "ltr": [words_to_letters(t) for t in texts],
                "phn": [" ".join(r.phones) for r in done],
                "align": [format_alignment(r.segments) for r in done],
            },
        )
        splits_meta[split] = {
            "utterances": len(done),
            "hours": round(sum(r.num_samples for r in done) / SAMPLE_RATE / 3600, 4),
            "words": sum(len(t.split()) for t in texts),
        }

    held_out = {r.utterance.text for split in ("valid", "test") for r in results[split]}
    lm_lines, lm_word_count = lm_sentences(sentences, held_out, lm_words)
    write_text(os.path.join(out, "lm", "lm.txt"), lm_lines)
    train_texts = [r.utterance.text for r in results["train"]]
    write_text(os.path.join(out, "lm", "lexicon.txt"), lexicon_lines(lm_lines + train_texts))

    audio_splits = (PRETRAIN_SPLIT, "valid", "test") if unlabeled_hours else SPLITS
    audio_seconds = sum(r.num_samples for s in audio_splits for r in results[s]) / SAMPLE_RATE
    meta = {
        "params": params,
        "voices": list(VOICES),
        "stretch_range": list(STRETCH_RANGE),
        "f0_shift_range": list(F0_SHIFT_RANGE),
        "sentence_words": [MIN_WORDS, MAX_WORDS],
        "text_sources": source_counts,
        "splits": splits_meta,
        "lm": {"sentences": len(lm_lines), "words": lm_word_count},
        "audio_hours": round(audio_seconds / 3600, 4),
        "synthesis_seconds": round(synth_seconds, 2),
        "synthesis_cpu_seconds": round(synth_cpu, 2),
        "real_time_factor": round(audio_seconds / synth_seconds, 1),
        "total_seconds": round(time.time() - start, 2),
    }
    write_text(os.path.join(out, "corpus.json"), [json.dumps(meta, indent=2)])
    meta["skipped"] = False
    return meta


def main(argv=None):
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--hours", type=float, default=1.0,
                        help="train audio in hours; valid and test get 1/12 of it each")
    parser.add_argument("--seed", type=int, default=1, help="same seed, same files")
    parser.add_argument("--jobs", type=int, default=None, help="parallel flite runs (cpu count)")
    parser.add_argument("--lm-words", type=int, default=0,
                        help="cap the LM text at this many words (0: all, about 2.4 M)")
    parser.add_argument("--unlabeled-hours", type=float, default=0.0,
                        help="this much more train-like audio, in a split 'pretrain' with train's, "
                             "for the self-supervised stages")
    args = parser.parse_args(argv)
    try:
        meta = build(args.out, args.hours, args.seed, args.jobs, args.lm_words, args.unlabeled_hours)
    except (SynthError, TextSourceError, ValueError, OSError) as e:
        sys.exit(f"error: {e}")
    sizes = ", ".join(
        f"{s} {m['utterances']} utt / {m['hours'] * 60:.1f} min" for s, m in meta["splits"].items()
    )
    if meta["skipped"]:
        print(f"corpus in {args.out} is complete with these parameters ({sizes}); nothing to do")
    else:
        print(
            f"built corpus in {args.out}: {sizes}; LM {meta['lm']['words']} words; "
            f"{meta['real_time_factor']:.0f}x real time, {meta['total_seconds']:.0f} s in all"
        )


if __name__ == "__main__":
    main()
