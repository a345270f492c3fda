"""Builds the decoders' language models and lexicons from a text corpus (one sentence per line).

    python -m fairseq_vqw2v.cli.lm ngram CORPUS OUT_DIR [--order 4] [--letter-dict dict.ltr.txt]
        -> OUT_DIR/lm.arpa, OUT_DIR/lm.bin (KenLM word n-gram), OUT_DIR/lexicon.txt (its words)
    python -m fairseq_vqw2v.cli.lm lexicon SOURCE OUT [--top N] [--letter-dict dict.ltr.txt]
        -> lexicon of an ARPA file's vocabulary or of a corpus / word list
    python -m fairseq_vqw2v.cli.lm charlm-data CORPUS OUT_DIR [--char-order N]
        -> OUT_DIR/train.txt + dict.txt for a fairseq char ConvLM (language_modeling task),
           with --char-order also OUT_DIR/charlm.arpa + charlm.bin (char n-gram KenLM)

Lines are normalised to lower-case words of a-z and apostrophes; lexicon lines are
``word<TAB>w o r d |``. KenLM tools come from PATH or tools/kenlm/bin (`make setup`).
"""

import argparse
import logging
import os
import sys
from typing import Callable, Dict, Optional, Tuple

from . import run
from ..data.text_files import load_dictionary
from ..decoding import lm_build
from ..decoding.lexicon import write_lexicon
from ..decoding.lm_build import CHAR_DICT, CHAR_TEXT, LEXICON, NGRAM_ARPA, NGRAM_BINARY

logger = logging.getLogger("fairseq_vqw2v.cli.lm")


def _letter_dict(args):
    if args.letter_dict is None:
        return None
    if not os.path.isfile(args.letter_dict):
        raise FileNotFoundError(f"{args.letter_dict}: letter dictionary not found")
    return load_dictionary(args.letter_dict)


def _check_letters(words, source: str, args) -> None:
    letters = _letter_dict(args)
    if letters is not None:
        lm_build.check_letters(words, source, letters, args.letter_dict)


def _write_lexicon(words, path: str) -> int:
    return write_lexicon(path, (w for w, _ in words))


def _ngram(args) -> str:
    corpus = lm_build.read_corpus(args.corpus)
    words = corpus.ranked_words()
    _check_letters(words, args.corpus, args)
    os.makedirs(args.out_dir, exist_ok=True)
    arpa = os.path.join(args.out_dir, NGRAM_ARPA)
    binary = os.path.join(args.out_dir, NGRAM_BINARY)
    logger.info("%s: %d sentences, %d distinct words", args.corpus, len(corpus.lines), len(words))
    lm_build.build_arpa((t for _, t in corpus.lines), arpa, args.order, args.discount_fallback)
    lm_build.build_binary(arpa, binary)
    lexicon = os.path.join(args.out_dir, LEXICON)
    n = _write_lexicon(words[: args.top] if args.top else words, lexicon)
    return (f"{args.order}-gram of {len(corpus.lines)} sentences: {binary} (ARPA {arpa}), "
            f"lexicon of {n} words: {lexicon}")


def _lexicon(args) -> str:
    words = lm_build.lexicon_words(args.source, args.top)
    _check_letters(words, args.source, args)
    n = _write_lexicon(words, args.out)
    return f"lexicon of {n} words from {args.source}: {args.out}"


def _charlm_data(args) -> str:
    corpus = lm_build.read_corpus(args.corpus)
    _check_letters(corpus.ranked_words(), args.corpus, args)
    os.makedirs(args.out_dir, exist_ok=True)
    text = os.path.join(args.out_dir, CHAR_TEXT)
    symbols = lm_build.write_char_corpus(corpus, text)
    dictionary = os.path.join(args.out_dir, CHAR_DICT)
    lm_build.write_char_dictionary(symbols, dictionary)
    summary = f"char LM data of {len(corpus.lines)} sentences: {text}, {dictionary}"
    if args.char_order:
        arpa = os.path.join(args.out_dir, "charlm.arpa")
        binary = os.path.join(args.out_dir, "charlm.bin")
        with open(text, encoding="utf-8") as f:
            lm_build.build_arpa((line.rstrip("\n") for line in f), arpa, args.char_order,
                                args.discount_fallback)
        lm_build.build_binary(arpa, binary)
        summary += f", {args.char_order}-gram char KenLM {binary}"
    return summary


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _add_top(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("--top", type=_positive, default=None, metavar="N", help=help_text)


def _add_letter_dict(p: argparse.ArgumentParser) -> None:
    p.add_argument("--letter-dict", metavar="DICT",
                   help="the acoustic model's dict.ltr.txt: every word must be spelled with its "
                        "letters (checked before anything is written)")


def _add_ngram_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--discount-fallback", action="store_true",
                   help="let lmplz fall back to fixed discounts (needed for tiny corpora)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fairseq_vqw2v.cli.lm", description=__doc__, allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ngram", help="word n-gram KenLM (ARPA + binary) and its lexicon")
    p.add_argument("corpus", help="text file, one sentence per line")
    p.add_argument("out_dir", help="writes lm.arpa, lm.bin and lexicon.txt here")
    p.add_argument("--order", type=_positive, default=4, help="n-gram order (default: 4)")
    _add_top(p, "lexicon of the N most frequent corpus words only (default: all)")
    _add_ngram_options(p)
    _add_letter_dict(p)

    p = sub.add_parser("lexicon", help="lexicon (word<TAB>w o r d |) of a word list")
    p.add_argument("source", help="ARPA file (its unigrams) or text corpus / word list")
    p.add_argument("out", help="lexicon file to write")
    _add_top(p, "the N most frequent (ARPA: most probable) words only (default: all)")
    _add_letter_dict(p)

    p = sub.add_parser("charlm-data", help="character corpus + fairseq dict for a char LM")
    p.add_argument("corpus", help="text file, one sentence per line")
    p.add_argument("out_dir", help="writes train.txt and dict.txt (and charlm.arpa/.bin) here")
    p.add_argument("--char-order", type=_positive, default=None,
                   help="also build a char n-gram KenLM of this order (e.g. 10; default: none)")
    _add_ngram_options(p)
    _add_letter_dict(p)
    return parser


COMMANDS: Dict[str, Callable[[argparse.Namespace], str]] = {
    "ngram": _ngram,
    "lexicon": _lexicon,
    "charlm-data": _charlm_data,
}


def main(argv: Optional[Tuple[str, ...]] = None) -> int:
    args = build_parser().parse_args(argv)
    return run(lambda: f"lm {args.command}: {COMMANDS[args.command](args)}")


if __name__ == "__main__":
    sys.exit(main())
