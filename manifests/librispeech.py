"""Manifests and labels for the LibriSpeech layout.

    python -m manifests.librispeech ROOT --dest DIR --splits train-clean-100,dev-clean,test-clean
    python -m manifests.librispeech ROOT --dest DIR \\
        --splits train=train-clean-100+train-clean-360+train-other-500,valid=dev-other

ROOT holds the corpus folders (``ROOT/dev-clean/SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt`` and
``SPEAKER-CHAPTER-UTT.flac``). Each ``--splits`` item is a corpus folder, written as
``{folder}.tsv``, or ``NAME=FOLDER[+FOLDER...]``, written as ``{NAME}.tsv`` (``+`` joins folders,
e.g. the 960 h training set). Utterances are in sorted path order, paths relative to ROOT.

Labels: ``.wrd`` is the transcript in the project's convention (lower case letters and
apostrophes; fairseq's ``libri_labels.py`` keeps LibriSpeech's upper case) and ``.ltr`` its letters
with ``|`` word boundaries. An audio file with no line in its chapter's ``.trans.txt`` is an error
(or a skip with ``--skip-bad``); a malformed ``.trans.txt`` line is an error naming the file and
line.
"""

import argparse
import glob
import os
from typing import Dict, List, Tuple

from fairseq_vqw2v.data.manifest import ManifestError, read_lines

from .common import (
    Utterance,
    existing_folder,
    labelled,
    prep_parser,
    run_cli,
    write_manifests,
)


def parse_splits(spec: str) -> List[Tuple[str, List[str]]]:
    """``"train=a+b,dev-clean"`` -> ``[("train", ["a", "b"]), ("dev-clean", ["dev-clean"])]``."""
    splits = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, folders = item.partition("=")
        folders = folders if sep else name
        splits.append((name, [f for f in folders.split("+") if f]))
    return splits


def read_trans(path: str) -> Dict[str, str]:
    """``UTT-ID WORDS...`` lines of one chapter's ``.trans.txt`` -> {utterance id: words}."""
    texts = {}
    for lineno, line in enumerate(read_lines(path, "transcripts"), start=1):
        parts = line.split(maxsplit=1)
        if not parts:
            continue
        if len(parts) < 2:
            raise ManifestError(
                f"{path}:{lineno}: expected 'UTTERANCE-ID TRANSCRIPT', got {line!r}"
            )
        texts[parts[0]] = parts[1].strip()
    return texts


def folder_utterances(root: str, folder: str, ext: str) -> List[Utterance]:
    """Every ``*.{ext}`` under ``root/folder`` with its transcript, in sorted path order."""
    base = os.path.join(root, folder)
    if not os.path.isdir(base):
        raise ManifestError(f"{base}: no such LibriSpeech folder")
    chapters: Dict[str, Dict[str, str]] = {}
    utts = []
    for path in sorted(glob.glob(os.path.join(base, "**", "*." + ext), recursive=True)):
        chapter_dir = os.path.dirname(path)
        if chapter_dir not in chapters:
            speaker, chapter = chapter_dir.split(os.sep)[-2:]
            trans = os.path.join(chapter_dir, f"{speaker}-{chapter}.trans.txt")
            chapters[chapter_dir] = read_trans(trans) if os.path.exists(trans) else {}
        utt_id = os.path.basename(path)[: -len(ext) - 1]
        utts.append(labelled(path, chapters[chapter_dir].get(utt_id)))
    if not utts:
        raise ManifestError(f"{base}: no .{ext} files")
    return utts


def get_parser() -> argparse.ArgumentParser:
    parser = prep_parser(__doc__, "folder holding the LibriSpeech corpus folders")
    parser.add_argument(
        "--splits",
        required=True,
        help="comma-separated corpus folders or NAME=FOLDER[+FOLDER...] items",
    )
    parser.add_argument("--ext", default="flac", help="audio extension")
    return parser


def main(argv=None) -> str:
    args = get_parser().parse_args(argv)
    root = existing_folder(args.root)
    splits = {}
    for name, folders in parse_splits(args.splits):
        if name in splits:
            raise ManifestError(f"--splits: split {name!r} given twice")
        splits[name] = [u for folder in folders for u in folder_utterances(root, folder, args.ext)]
    if not splits:
        raise ManifestError("--splits: no split given")
    return write_manifests(args, root, splits)


if __name__ == "__main__":
    run_cli(main)
