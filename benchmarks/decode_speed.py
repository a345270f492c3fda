"""Decoding speed on one core: greedy (Viterbi) and KenLM lexicon beam search (beam 50).

    python benchmarks/decode_speed.py [--seconds 120] [--beam 50]

Synthetic CTC emissions at 100 frames/s over a 32-symbol letter dictionary spell sentences of
an LM corpus (demo/corpus/lm/lm.txt when the demo corpus exists, else seeded pseudo-text) with
acoustic noise; a 4-gram is built from the corpus with lmplz. Prints the CPU model, the audio
and decoding seconds (CPU time of this single thread, the wall time beside it), the real-time
factor (decode / audio) and its inverse "x real time", with the error rates as a sanity check.
The target is >= 100x real time for beam 50.
"""

import argparse
import os
import random
import string
import tempfile
import time

import torch

from fairseq.data import Dictionary

from fairseq_vqw2v.constants import FRAME_RATE
from fairseq_vqw2v.data.text_norm import words_to_letters
from fairseq_vqw2v.decoding import lm_build
from fairseq_vqw2v.decoding.kenlm_decoder import KenLMLexiconDecoder
from fairseq_vqw2v.decoding.config import BeamSearchConfig
from fairseq_vqw2v.decoding.lexicon import write_lexicon
from fairseq_vqw2v.decoding.scoring import score
from fairseq_vqw2v.decoding.viterbi import ViterbiDecoder

from am_throughput import cpu_model  # this folder, where the benchmarks run

TARGET = 100.0
DEMO_LM_TEXT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "demo", "corpus", "lm", "lm.txt")


def pseudo_text(rng: random.Random, sentences: int = 5000, vocab: int = 2000):
    """Sentences of Zipf-distributed pseudo-words (a stand-in for a real LM corpus)."""
    words = sorted({"".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 9)))
                    for _ in range(vocab)})
    weights = [1.0 / (rank + 1) for rank in range(len(words))]
    return [" ".join(rng.choices(words, weights, k=rng.randint(5, 20))) for _ in range(sentences)]


def letter_dictionary() -> Dictionary:
    d = Dictionary()
    for symbol in "|" + string.ascii_lowercase + "'":
        d.add_symbol(symbol)
    return d


def emissions_for(letters: str, d: Dictionary, g: torch.Generator, noise: float) -> torch.Tensor:
    """T x V log-probabilities: each token peaks on 1-2 frames among blanks (~15 tokens/s)."""
    rows = []
    for token in letters.split():
        span = int(torch.randint(5, 9, (1,), generator=g))
        peak = int(torch.randint(1, 3, (1,), generator=g))
        for frame in range(span):
            target = d.index(token) if frame < peak else d.bos()
            logits = noise * torch.randn(len(d), generator=g)
            logits[target] += 5.0
            rows.append(logits)
    return torch.log_softmax(torch.stack(rows), dim=-1)


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.process_time() - cpu, time.perf_counter() - wall


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="audio seconds to decode")
    parser.add_argument("--beam", type=int, default=50)
    parser.add_argument("--noise", type=float, default=1.2, help="acoustic noise (logit std)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng, g = random.Random(1), torch.Generator().manual_seed(1)

    if os.path.isfile(DEMO_LM_TEXT):
        source = DEMO_LM_TEXT
        corpus = [text for _, text in lm_build.read_corpus(DEMO_LM_TEXT).lines]
    else:
        source = "seeded pseudo-text"
        corpus = pseudo_text(rng)
    d = letter_dictionary()
    with tempfile.TemporaryDirectory() as tmp:
        arpa, binary = os.path.join(tmp, "lm.arpa"), os.path.join(tmp, "lm.bin")
        lm_build.build_arpa(corpus, arpa, order=4, discount_fallback=True, progress=False)
        lm_build.build_binary(arpa, binary, progress=False)
        lexicon = os.path.join(tmp, "lexicon.txt")
        write_lexicon(lexicon, sorted({w for s in corpus for w in s.split()}))

        utterances, refs, frames = [], [], 0
        while frames < args.seconds * FRAME_RATE:
            ref = words_to_letters(rng.choice(corpus))
            utterances.append(emissions_for(ref, d, g, args.noise))
            refs.append(ref)
            frames += utterances[-1].size(0)
        batch = torch.full((len(utterances), max(u.size(0) for u in utterances), len(d)), -1e4)
        for i, u in enumerate(utterances):
            batch[i, : u.size(0)] = u
        lengths = torch.tensor([u.size(0) for u in utterances])
        audio = frames / FRAME_RATE

        decoder, load_cpu, _ = timed(lambda: KenLMLexiconDecoder(d, lexicon, binary, BeamSearchConfig(beam=args.beam)))
        print(f"CPU: {cpu_model()}; 1 thread; LM: 4-gram of {len(corpus)} sentences ({source}), "
              f"lexicon {decoder.word_dict.index_size() - 1} words (loaded in {load_cpu:.2f} s)")
        print(f"audio: {len(utterances)} utterances, {audio:.1f} s at {FRAME_RATE} frames/s, "
              f"{len(d)} labels")
        for name, dec in (("viterbi", ViterbiDecoder(d)), (f"kenlm beam {args.beam}", decoder)):
            hypos, cpu, wall = timed(lambda: dec.decode(batch, lengths))
            rates = score(refs, [d.string(h[0]["tokens"]) for h in hypos], "ltr")
            print(f"{name:>14}: decode {cpu:.3f} CPU s ({wall:.3f} s wall), RTF {cpu / audio:.5f}, "
                  f"{audio / cpu:.0f}x real time; {rates}")
        verdict = "meets" if audio / cpu >= TARGET else "misses"
        print(f"kenlm beam {args.beam}: {audio / cpu:.0f}x real time on one core ({verdict} the "
              f"{TARGET:.0f}x target)")


if __name__ == "__main__":
    main()
