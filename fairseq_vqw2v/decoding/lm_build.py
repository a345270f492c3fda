"""Building decoding resources from a text corpus: KenLM n-grams, lexicons, char-LM data.

A corpus has one sentence per line; every line is normalised with
:func:`fairseq_vqw2v.data.text_norm.normalize_words` (the project's word convention), lines that
normalise to nothing are skipped. KenLM's ``lmplz`` and ``build_binary`` are taken from ``PATH``,
else from ``<repo>/tools/kenlm/bin`` where ``make setup`` builds them.
"""

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple

from fairseq.data import Dictionary

from fairseq_vqw2v.data.text_norm import normalize_words, words_to_letters
from fairseq_vqw2v.data.text_files import decoding, load_dictionary, write_dictionary
from fairseq_vqw2v.decoding.lexicon import spell, unknown_labels

logger = logging.getLogger(__name__)

# the files ``cli.lm`` writes in its OUT_DIR, which reproduce's decode stages read
NGRAM_ARPA, NGRAM_BINARY, LEXICON = "lm.arpa", "lm.bin", "lexicon.txt"
CHAR_TEXT, CHAR_DICT = "train.txt", "dict.txt"

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KENLM_BIN = os.path.join(_REPO, "tools", "kenlm", "bin")
"""Where ``make setup`` builds ``lmplz`` and ``build_binary``."""

ARPA_SPECIALS = {"<s>", "</s>", "<unk>"}


def find_tool(name: str) -> str:
    """Path of a KenLM tool: on ``PATH``, else in :data:`KENLM_BIN`."""
    found = shutil.which(name) or shutil.which(name, path=KENLM_BIN)
    if found is None:
        raise FileNotFoundError(
            f"KenLM tool {name!r} not found on PATH nor in {KENLM_BIN}: run `make setup`, "
            f"which builds it"
        )
    return found


def kenlm_tools_missing() -> Optional[str]:
    """Why ``lmplz`` / ``build_binary`` cannot be used, or ``None`` when both are found."""
    try:
        find_tool("lmplz")
        find_tool("build_binary")
    except FileNotFoundError as e:
        return str(e)
    return None


@dataclass
class Corpus:
    """Normalised sentences of a text file with the 1-based line each came from."""

    path: str
    lines: List[Tuple[int, str]]

    def ranked_words(self) -> List[Tuple[str, int]]:
        """(word, first line) of every distinct word, most frequent first (ties alphabetical)."""
        counts, first = Counter(), {}
        for lineno, text in self.lines:
            for word in text.split():
                counts[word] += 1
                first.setdefault(word, lineno)
        return [(w, first[w]) for w, _ in sorted(counts.items(), key=lambda c: (-c[1], c[0]))]


def read_corpus(path: str) -> Corpus:
    """Reads and normalises a corpus; an empty file or one with no usable line is an error."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: corpus not found")
    lines, raw = [], 0
    with decoding(path), open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            raw += 1
            text = normalize_words(line)
            if text:
                lines.append((lineno, text))
    if raw == 0:
        raise ValueError(f"{path}: empty corpus")
    if not lines:
        raise ValueError(
            f"{path}:1-{raw}: no usable line (no word of letters a-z or apostrophes on any line)"
        )
    return Corpus(path, lines)


def check_letters(
    words: Iterable[Tuple[str, int]], source: str, letter_dict: Dictionary, letter_dict_path: str
) -> None:
    """Every (word, line) of ``source`` must be spelled with labels of the letter dictionary."""
    for word, lineno in words:
        unknown = unknown_labels(spell(word), letter_dict)
        if unknown:
            raise ValueError(
                f"{source}:{lineno}: word {word!r} has {unknown} which the letter dictionary "
                f"{letter_dict_path} does not have"
            )


class ToolError(OSError):
    """An external tool (lmplz, build_binary) that failed; the message holds its output."""


def _run(cmd: List[str], what: str, stdin_path: Optional[str] = None, progress: bool = True) -> None:
    """Runs a tool, relaying its stderr (KenLM's progress bars) and naming it when it fails."""
    logger.info("%s: %s", what, " ".join(cmd))
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        tail = b""
        for chunk in iter(lambda: proc.stderr.read1(4096), b""):
            if progress:
                sys.stderr.buffer.write(chunk)
                sys.stderr.flush()
            tail = (tail + chunk)[-4000:]
        proc.wait()
    finally:
        if stdin_path:
            stdin.close()
    if proc.returncode != 0:
        message = tail.decode(errors="replace").strip()
        hint = ""
        if "discount_fallback" in message or "BadDiscount" in message:
            # lmplz advises its own flag, --discount_fallback, which our lm CLI spells otherwise
            message = message.replace("--discount_fallback", "--discount-fallback")
            hint = ("\nthe corpus is too small for Kneser-Ney discounts: rerun with "
                    "--discount-fallback")
        raise ToolError(f"{what} failed with exit code {proc.returncode}:\n{message}{hint}")


def build_arpa(
    sentences: Iterable[str],
    arpa_path: str,
    order: int = 4,
    discount_fallback: bool = False,
    memory: str = "20%",
    progress: bool = True,
) -> None:
    """Estimates a modified Kneser-Ney ``order``-gram over ``sentences`` with ``lmplz``."""
    lmplz = find_tool("lmplz")
    out_dir = os.path.dirname(os.path.abspath(arpa_path))
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        text = os.path.join(tmp, "text.txt")
        with open(text, "w", encoding="utf-8") as f:
            f.writelines(s + "\n" for s in sentences)
        cmd = [lmplz, "-o", str(order), "-S", memory, "-T", tmp, "--text", text]
        cmd += ["--arpa", os.path.join(tmp, "lm.arpa")]
        if discount_fallback:
            cmd.append("--discount_fallback")
        _run(cmd, f"lmplz ({order}-gram)", progress=progress)
        os.replace(os.path.join(tmp, "lm.arpa"), arpa_path)


def build_binary(arpa_path: str, binary_path: str, progress: bool = True) -> None:
    """Converts an ARPA file to KenLM's binary format (fast loading) with ``build_binary``."""
    tmp = f"{binary_path}.tmp"
    _run([find_tool("build_binary"), arpa_path, tmp], "build_binary", progress=progress)
    os.replace(tmp, binary_path)


def arpa_unigrams(arpa_path: str) -> List[Tuple[str, float, int]]:
    """(word, log10 probability, line) of every unigram of an ARPA file, specials excluded."""
    unigrams, section = [], None
    with decoding(arpa_path), open(arpa_path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.strip()
            if line.startswith("\\"):
                section = line
                continue
            if section != "\\1-grams:" or not line:
                continue
            fields = line.split("\t")
            if len(fields) < 2:
                raise ValueError(f"{arpa_path}:{lineno}: expected 'logprob<TAB>word', got {line!r}")
            if fields[1] not in ARPA_SPECIALS:
                unigrams.append((fields[1], float(fields[0]), lineno))
    if section is None:
        raise ValueError(f"{arpa_path}: not an ARPA file (no \\data\\ header)")
    return unigrams


def is_arpa(path: str) -> bool:
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip():
                return line.strip() == "\\data\\"
    return False


def lexicon_words(source: str, top: Optional[int] = None) -> List[Tuple[str, int]]:
    """(word, source line) for a lexicon, most frequent first, from an ARPA file (its unigrams,
    ranked by probability) or a text corpus / word list (ranked by count); ``top`` keeps the first
    ``top`` words."""
    if not os.path.isfile(source):
        raise FileNotFoundError(f"{source}: word source not found")
    if is_arpa(source):
        ranked = sorted(arpa_unigrams(source), key=lambda u: (-u[1], u[0]))
        words = [(word, lineno) for word, _, lineno in ranked]
    else:
        words = read_corpus(source).ranked_words()
    return words[:top] if top else words


def write_char_corpus(corpus: Corpus, path: str) -> Counter:
    """Writes the corpus as letter lines (``h i | y o u |``, the ``.ltr`` format) for a char LM;
    returns the count of every symbol."""
    counts = Counter()
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for _, text in corpus.lines:
            letters = words_to_letters(text)
            counts.update(letters.split())
            f.write(letters + "\n")
    os.replace(tmp, path)
    return counts


def write_char_dictionary(counts: Counter, path: str) -> Dictionary:
    """fairseq ``dict.txt`` of the char LM's symbols, most frequent first."""
    write_dictionary(path, counts)
    return load_dictionary(path)
