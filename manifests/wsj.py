"""Manifests and letter/word labels for WSJ, given one transcript listing per split.

    python -m manifests.wsj ROOT --dest DIR \\
        --listing train=si284.tsv --listing valid=nov93dev.tsv --listing test=nov92.tsv

The paper trains on si284 and reports nov93dev as valid and nov92 as test; any ``NAME=LISTING``
pairs work. A listing is a UTF-8 text file with one ``UTT_ID<TAB>AUDIO<TAB>TRANSCRIPT`` line per
utterance (blank lines ignored), AUDIO being a path relative to ROOT or absolute. The original
``.wv1`` files are shorten-compressed SPHERE, which libsndfile cannot read: convert them first
(e.g. ``sph2pipe -f wav``) and list the converted files. A listing can be made from the corpus'
``.dot`` transcripts (``TRANSCRIPT (UTT_ID)`` lines).

Transcripts are cleaned of WSJ annotations before the project's word normalisation (lower case,
letters and apostrophes): non-speech events in brackets (``[loud_breath]``, ``<noise>``,
``{...}``) and verbalised punctuation (``,COMMA``, ``.PERIOD``, ``"DOUBLE-QUOTE``) are dropped,
and the marks ``*`` (mispronounced), ``~`` and ``:`` (truncated, lengthened) are removed. Labels
are ``.wrd`` and ``.ltr``; an utterance left with no word is an error (or a ``--skip-bad`` skip).
"""

import argparse
import os
import re
from typing import List

from fairseq_vqw2v.data.manifest import ManifestError, read_lines

from .common import (
    Utterance,
    existing_folder,
    labelled,
    prep_parser,
    run_cli,
    write_manifests,
)

_NON_SPEECH = re.compile(r"^[\[<{].*[\]>}]$")
_VERBAL_PUNCTUATION = re.compile(r"^[^\w'\[<{*~:]")
_MARKS = re.compile(r"[*~:]")


def clean_wsj_transcript(text: str) -> str:
    """Drops WSJ non-speech and verbalised-punctuation tokens and annotation marks."""
    kept = []
    for token in text.split():
        if _NON_SPEECH.match(token) or _VERBAL_PUNCTUATION.match(token):
            continue
        kept.append(_MARKS.sub("", token))
    return " ".join(t for t in kept if t)


def read_listing(path: str, root: str) -> List[Utterance]:
    """Utterances of one ``UTT_ID<TAB>AUDIO<TAB>TRANSCRIPT`` listing, in listing order."""
    utts, seen = [], {}
    for lineno, line in enumerate(read_lines(path, "listing"), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3 or not parts[0] or not parts[1]:
            raise ManifestError(
                f"{path}:{lineno}: expected 'UTT_ID<TAB>AUDIO<TAB>TRANSCRIPT', got {line!r}"
            )
        utt_id, audio, text = parts
        if utt_id in seen:
            raise ManifestError(
                f"{path}:{lineno}: utterance {utt_id!r} already on line {seen[utt_id]}"
            )
        seen[utt_id] = lineno
        utts.append(labelled(os.path.join(root, audio), clean_wsj_transcript(text)))
    if not utts:
        raise ManifestError(f"{path}: empty listing")
    return utts


def get_parser() -> argparse.ArgumentParser:
    parser = prep_parser(__doc__, "folder that relative AUDIO paths start from")
    parser.add_argument(
        "--listing",
        action="append",
        required=True,
        metavar="NAME=FILE",
        help="split name and its UTT_ID<TAB>AUDIO<TAB>TRANSCRIPT listing (repeat per split)",
    )
    return parser


def main(argv=None) -> str:
    args = get_parser().parse_args(argv)
    root = existing_folder(args.root)
    splits = {}
    for item in args.listing:
        name, sep, listing = item.partition("=")
        if not sep or not name or not listing:
            raise ManifestError(f"--listing: expected NAME=FILE, got {item!r}")
        if name in splits:
            raise ManifestError(f"--listing: split {name!r} given twice")
        splits[name] = read_listing(listing, root)
    return write_manifests(args, root, splits)


if __name__ == "__main__":
    run_cli(main)
