"""English sentences for the embedded corpus, from text that Debian ships.

Sources (Debian main, installed by ``scripts/install_system_deps.sh``): WordNet glosses and their
quoted examples (``wordnet-base``), the King James Bible (``bible-kjv``) and the ``fortunes``
cookies. Every source is read in a fixed order, so the same packages give the same sentences.

Normalisation (what flite reads is exactly what the labels say): text is split into sentences
at ``. ! ? ; :``; a sentence holding any character other than letters, apostrophes, whitespace and
plain punctuation (digits, symbols, markup, non-English letters) is dropped whole rather than
spelled out, because flite's own reading of digits and symbols cannot be recovered for the labels.
What is kept is lowercased; hyphens and dashes separate words; other punctuation is removed;
apostrophes stay inside words (``didn't``) and are stripped at word edges (quotes).
"""

import os
import re
import subprocess
from collections import OrderedDict

WORDNET_DIR = "/usr/share/wordnet"
FORTUNES_DIR = "/usr/share/games/fortunes"
WORDNET_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
# Pictures, not prose.
FORTUNES_SKIP = frozenset({"art", "ascii-art"})
BIBLE_RANGE = "Gen1:1-Rev22:21"

_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\s*\n\s*\n\s*")
_ALLOWED = re.compile(r"[A-Za-z'\u2019`\s,.;:!?\"()\-]*")
_WORD_SEPARATORS = re.compile(r"[\s\-,.;:!?\"()]+")


class TextSourceError(RuntimeError):
    """A Debian text source is missing or unreadable; names the package to install."""


def normalize(sentence):
    """Returns the sentence as lowercase words of ``a-z`` and ``'``, or None if it has to be
    dropped (digits, symbols, non-English letters, or nothing left)."""
    if not _ALLOWED.fullmatch(sentence):
        return None
    words = []
    for token in _WORD_SEPARATORS.split(sentence.lower().replace("\u2019", "'").replace("`", "'")):
        token = token.strip("'")
        if token:
            words.append(token)
    return " ".join(words) or None


def split_sentences(text):
    """Splits running text into sentence strings (not yet normalised)."""
    return [s for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def wordnet_texts(root=WORDNET_DIR):
    """Yields each WordNet gloss (definitions and quoted examples, ``;``-separated)."""
    for name in WORDNET_FILES:
        path = os.path.join(root, name)
        if not os.path.exists(path):
            raise TextSourceError(f"{path}: missing; install the Debian package wordnet-base")
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                # The licence header lines start with spaces, data lines with an offset.
                if line[:1].isdigit() and " | " in line:
                    yield line.split(" | ", 1)[1].replace('"', "; ")


def bible_texts(command="bible"):
    """Yields each verse of the King James Bible, from the ``bible`` program of bible-kjv."""
    try:
        out = subprocess.run(
            [command, "-l", "100000", BIBLE_RANGE], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise TextSourceError(f"{command}: cannot run ({e}); install the Debian package bible-kjv")
    for line in out.splitlines():
        # Verse lines are "  <number> <text>"; the others are book and chapter headings.
        match = re.match(r"\s+\d+ (.+)", line)
        if match:
            yield match.group(1)


def fortune_texts(root=FORTUNES_DIR):
    """Yields each fortune cookie (``%``-separated entries of the fortunes files)."""
    if not os.path.isdir(root):
        raise TextSourceError(f"{root}: missing; install the Debian package fortunes")
    for name in sorted(os.listdir(root)):
        if name.endswith((".dat", ".u8")) or name in FORTUNES_SKIP:
            continue
        with open(os.path.join(root, name), encoding="utf-8", errors="replace") as f:
            for cookie in re.split(r"^%$", f.read(), flags=re.M):
                yield cookie


SOURCES = OrderedDict(wordnet=wordnet_texts, bible=bible_texts, fortunes=fortune_texts)


def load_sentences(sources=SOURCES):
    """Reads every source and returns (sentences, counts).

    sentences: unique normalised sentences, in first-seen order over the sources;
    counts: source name -> number of unique sentences it contributed.
    """
    seen = OrderedDict()
    counts = OrderedDict()
    for name, texts in sources.items():
        before = len(seen)
        for text in texts():
            for sentence in split_sentences(text):
                normalized = normalize(sentence)
                if normalized is not None:
                    seen.setdefault(normalized, None)
        counts[name] = len(seen) - before
    return list(seen), counts
