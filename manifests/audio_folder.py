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
(``spk1/utt3``) or its bare stem (``utt3``; an error when several files share it). Blank lines
are ignored; a file given different transcripts under different keys is an error, and keys that
match no file are listed in the summary.
Transcripts are normalised to the project's word convention (lower case, letters a-z and
apostrophes, accented letters transliterated: ``café`` -> ``cafe``; a letter with no a-z form is an
error; other characters split words) and written as ``.wrd`` and ``.ltr``. A file with no
transcript (or one empty after normalisation) is an error, or a skip with ``--skip-bad``.
"""

import argparse
import glob
import os
import random
from typing import Dict, List, Optional, Sequence, Tuple

from fairseq_vqw2v.data.manifest import ManifestError, read_lines

from .common import (
    Utterance,
    existing_folder,
    labelled,
    prep_parser,
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


def match_transcripts(
    transcripts: Dict[str, str], listing: str, root: str, paths: Sequence[str]
) -> Tuple[List[Optional[str]], List[str]]:
    """The transcript of each of ``paths`` (``None``: none) and the listing keys that matched no
    file. A bare stem shared by several files, or one file given different transcripts under
    different keys, is a ``ManifestError``."""
    rels = [os.path.relpath(p, root) for p in paths]
    by_stem: Dict[str, List[str]] = {}
    for rel in rels:
        by_stem.setdefault(os.path.basename(os.path.splitext(rel)[0]), []).append(rel)
    used, texts = set(), []
    for rel in rels:
        stem_path = os.path.splitext(rel)[0]
        stem = os.path.basename(stem_path)
        keys = [k for k in dict.fromkeys((rel, stem_path, stem)) if k in transcripts]
        if stem in keys and len(by_stem[stem]) > 1:
            raise ManifestError(
                f"{listing}: key {stem!r} matches {len(by_stem[stem])} files "
                f"({', '.join(sorted(by_stem[stem]))}): use their paths relative to ROOT"
            )
        if len({transcripts[k] for k in keys}) > 1:
            given = "; ".join(f"{k!r}: {transcripts[k]!r}" for k in keys)
            raise ManifestError(f"{listing}: conflicting transcripts for {rel}: {given}")
        used.update(keys)
        texts.append(transcripts[keys[0]] if keys else None)
    return texts, [k for k in transcripts if k not in used]


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

    paths = list(find_audio(root, exts, args.path_must_contain))
    if not paths:
        raise ManifestError(f"{root}: no files with extension {', '.join(exts)}")
    texts, unmatched = [None] * len(paths), []
    if transcripts is not None:
        texts, unmatched = match_transcripts(transcripts, args.transcripts, root, paths)
    rand = random.Random(args.seed)
    splits = {"train": [], "valid": []}
    for path, text in zip(paths, texts):
        split = "train" if rand.random() > args.valid_percent else "valid"
        splits[split].append(labelled(path, text) if transcripts is not None else Utterance(path))
    if args.valid_percent == 0:
        del splits["valid"]
    summary = write_manifests(args, root, splits)
    if unmatched:
        shown = ", ".join(map(repr, unmatched[:5])) + (", ..." if len(unmatched) > 5 else "")
        summary += (f"; {len(unmatched)} transcript key{'s' if len(unmatched) > 1 else ''} of "
                    f"{args.transcripts} matched no audio file: {shown}")
    return summary


if __name__ == "__main__":
    run_cli(main)
