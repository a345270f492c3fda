"""Manifests for any folder of audio, split at random into train and valid.

    python -m manifests.audio_folder ROOT --dest DIR [--ext flac,wav] [--valid-percent 0.01]
        [--seed 42] [--path-must-contain FRAG] [--transcripts FILE] [--skip-bad] [--min-samples N]

For one extension the split is exactly that of fairseq's ``examples/wav2vec/wav2vec_manifest.py``
with the same ``--seed`` and ``--valid-percent``: files are visited in the order of
``glob.iglob(ROOT/**/*.EXT, recursive=True)`` and each draws ``random.Random(seed).random()``; it
goes to valid unless the draw is above ``--valid-percent``. Every file draws, usable or not, so
``--skip-bad`` never moves a good file to the other split. With several extensions, each one's
glob runs in the order given. ``valid.tsv`` is written only when ``--valid-percent`` > 0.

Transcript listing (``--transcripts``): UTF-8, one ``KEY<TAB>transcript`` line per file, where
KEY is the file's path relative to ROOT (``spk1/utt3.wav``), that path without its extension
(``spk1/utt3``) or its bare stem (``utt3``, when stems are unique). Blank lines are ignored.
Transcripts are normalised to the project's word convention (lower case, letters a-z and
apostrophes; other characters split words) and written as ``.wrd`` and ``.ltr``. A file with no
transcript (or one empty after normalisation) is an error, or a skip with ``--skip-bad``.
"""

import argparse
import glob
import os
import random
from typing import Dict, Optional, Sequence

from fairseq_vqw2v.data.manifest import ManifestError

from .common import (
    Utterance,
    existing_folder,
    labelled,
    prep_parser,
    read_lines,
    run_cli,
    write_manifests,
)


def read_transcripts(path: str) -> Dict[str, str]:
    """``KEY<TAB>transcript`` lines -> {KEY: raw transcript}; errors name the file and line."""
    transcripts = {}
    for lineno, line in enumerate(read_lines(path, "transcript listing"), start=1):
        if not line.strip():
            continue
        key, sep, text = line.partition("\t")
        if not sep or not key:
            raise ManifestError(f"{path}:{lineno}: expected 'KEY<TAB>transcript', got {line!r}")
        if key in transcripts:
            raise ManifestError(f"{path}:{lineno}: transcript for {key!r} given twice")
        transcripts[key] = text
    return transcripts


def find_audio(root: str, exts: Sequence[str], path_must_contain: Optional[str] = None):
    """Audio files under ``root`` in ``wav2vec_manifest.py``'s order, as real paths."""
    for ext in exts:
        for fname in glob.iglob(os.path.join(root, "**/*." + ext), recursive=True):
            file_path = os.path.realpath(fname)
            if path_must_contain and path_must_contain not in file_path:
                continue
            yield file_path


def _transcript_for(transcripts: Dict[str, str], root: str, path: str) -> Optional[str]:
    rel = os.path.relpath(path, root)
    stem_path = os.path.splitext(rel)[0]
    for key in (rel, stem_path, os.path.basename(stem_path)):
        if key in transcripts:
            return transcripts[key]
    return None


def get_parser() -> argparse.ArgumentParser:
    parser = prep_parser(__doc__, "folder searched recursively for audio")
    parser.add_argument(
        "--ext", default="flac,wav", help="comma-separated extensions to look for, in order"
    )
    parser.add_argument(
        "--valid-percent",
        type=float,
        default=0.01,
        help="fraction of files (between 0 and 1) drawn into the valid split",
    )
    parser.add_argument("--seed", type=int, default=42, help="seed of the train/valid draw")
    parser.add_argument(
        "--path-must-contain", default=None, help="only files whose real path contains this"
    )
    parser.add_argument(
        "--transcripts", default=None, help="KEY<TAB>transcript listing: writes .wrd and .ltr"
    )
    return parser


def main(argv=None) -> str:
    args = get_parser().parse_args(argv)
    if not 0 <= args.valid_percent <= 1:
        raise ManifestError(f"--valid-percent must be between 0 and 1, got {args.valid_percent}")
    root = existing_folder(args.root)
    transcripts = read_transcripts(args.transcripts) if args.transcripts else None
    exts = [e.strip().lstrip(".") for e in args.ext.split(",") if e.strip()]

    rand = random.Random(args.seed)
    splits = {"train": [], "valid": []}
    for path in find_audio(root, exts, args.path_must_contain):
        split = "train" if rand.random() > args.valid_percent else "valid"
        utt = (
            labelled(path, _transcript_for(transcripts, root, path))
            if transcripts is not None
            else Utterance(path)
        )
        splits[split].append(utt)
    if not splits["train"] and not splits["valid"]:
        raise ManifestError(f"{root}: no files with extension {', '.join(exts)}")
    if args.valid_percent == 0:
        del splits["valid"]
    return write_manifests(args, root, splits)


if __name__ == "__main__":
    run_cli(main)
