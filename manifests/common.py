"""What every manifest prep script shares: arguments, per-file checks, skipping, atomic writing.

A prep script only lists its utterances per split (:class:`Utterance`: audio file, labels, or a
reason it is unusable, such as a missing transcript) and hands them to :func:`write_manifests`,
which checks every audio file (:func:`fairseq_vqw2v.data.audio_checks.check_audio`, in a process pool
when there are many), then either

- stops at the first bad file with ``ManifestError("path: reason")`` before anything is written
  (the CLI prints ``error: ...`` and exits 2), or
- with ``--skip-bad``, leaves bad files out, lists them in ``{dest}/{split}.skipped``
  (``path<TAB>reason``) and prints a count per reason,

and finally writes every split (``{split}.tsv`` and its label files) and a one-line summary. A
split left with no file is an error; so are an output folder that cannot be written, a split name
that is not a file name and a path that a TSV line cannot hold. All splits are written together or
none (a failure leaves no split's files behind).
"""

import argparse
import ast
import os
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import soundfile as sf
from tqdm import tqdm

from fairseq_vqw2v.constants import LARGE_ENCODER, SAMPLE_RATE
from fairseq_vqw2v.data.audio_checks import check_audio, duration_summary
from fairseq_vqw2v.data.manifest import (
    ManifestError,
    check_split_name,
    check_tsv_path,
    split_files,
    write_files,
)
from fairseq_vqw2v.data.receptive_field import receptive_field
from fairseq_vqw2v.data.text_norm import foreign_letters, normalize_words, words_to_letters

DEFAULT_MIN_SAMPLES = receptive_field(ast.literal_eval(LARGE_ENCODER))
"""Receptive field of the default vq-wav2vec encoder (465 samples): shorter files give no frame."""

# below this many files, starting worker processes costs more than it saves
_POOL_MIN_FILES = 64

MISSING_TRANSCRIPT = "missing transcript"
EMPTY_TRANSCRIPT = "empty transcript"


@dataclass
class Utterance:
    """One audio file of a split.

    Attributes:
        path: the audio file.
        labels: label ext (``wrd``, ``ltr``, ``phn``) -> one line of labels.
        reason: why the utterance cannot be used before its audio is even read (e.g.
            :data:`MISSING_TRANSCRIPT`), else ``None``.
    """

    path: str
    labels: Optional[Dict[str, str]] = None
    reason: Optional[str] = None


def labelled(path: str, text: Optional[str]) -> Utterance:
    """An utterance with ``.wrd``/``.ltr`` labels from a raw transcript (``None``: missing)."""
    if text is None:
        return Utterance(path, reason=MISSING_TRANSCRIPT)
    foreign = foreign_letters(text)
    if foreign:
        raise ManifestError(
            f"{path}: transcript {text!r} has letters with no a-z form: {', '.join(foreign)} "
            "(transliterate it first: words must not lose letters)"
        )
    words = normalize_words(text)
    if not words:
        return Utterance(path, reason=EMPTY_TRANSCRIPT)
    return Utterance(path, labels={"wrd": words, "ltr": words_to_letters(words)})


def prep_parser(doc: str, root_help: str) -> argparse.ArgumentParser:
    """A prep script's parser: its module docstring as help, ROOT, and the common arguments."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("root", metavar="ROOT", help=root_help)
    add_common_args(parser)
    return parser


def existing_folder(path: str) -> str:
    """The real path of folder ``path``; a ``ManifestError`` if there is none."""
    if not os.path.isdir(path):
        raise ManifestError(f"{path}: not a folder")
    return os.path.realpath(path)


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """The arguments of every prep script: output folder, checks and skipping."""
    parser.add_argument("--dest", required=True, help="output folder of {split}.tsv and labels")
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out unusable files (listed in {dest}/{split}.skipped) instead of failing",
    )
    parser.add_argument(
        "--min-samples",
        type=int,
        default=DEFAULT_MIN_SAMPLES,
        help="shorter files are unusable (default: receptive field of the vq-wav2vec encoder, "
        f"{DEFAULT_MIN_SAMPLES} samples)",
    )
    parser.add_argument(
        "--sample-rate", type=int, default=SAMPLE_RATE, help="every file must have this rate"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="processes reading audio files for the checks",
    )


def _check_one(job: Tuple[str, int, int]) -> Tuple[int, Optional[str]]:
    return check_audio(*job)


def check_all(
    paths: Sequence[str], min_samples: int, sample_rate: int, workers: int
) -> List[Tuple[int, Optional[str]]]:
    """``check_audio`` on every path, in order, with a progress bar."""
    jobs = [(p, min_samples, sample_rate) for p in paths]
    bar = dict(total=len(jobs), desc="checking audio", unit="file", file=sys.stderr)
    if workers <= 1 or len(jobs) < _POOL_MIN_FILES:
        return [_check_one(j) for j in tqdm(jobs, **bar)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(tqdm(pool.map(_check_one, jobs, chunksize=16), **bar))


def _explain(path: str, samples: int, reason: str, min_samples: int, sample_rate: int) -> str:
    """The reason with the numbers a user needs to act on it."""
    if reason == "too short":
        return f"too short ({samples} samples, need at least {min_samples})"
    if reason == "wrong sample rate":
        return f"wrong sample rate ({sf.info(path).samplerate} Hz, expected {sample_rate})"
    if reason == "multi-channel":
        return f"multi-channel ({sf.info(path).channels} channels, expected 1)"
    return reason


def skip_summary(reasons: Sequence[str]) -> str:
    """``"skipped 3 files: 2 too short, 1 wrong sample rate"`` (most frequent reason first)."""
    counts = Counter(reasons).most_common()
    detail = ", ".join(f"{n} {reason}" for reason, n in counts)
    return f"skipped {len(reasons)} file{'s' if len(reasons) != 1 else ''}" + (
        f": {detail}" if detail else ""
    )


MAX_LISTED = 20
"""Unusable files named in one error; a user fixes them all before the next run."""


def bad_files_message(bad: List[str]) -> str:
    """One line per unusable file (``path: reason``, at most :data:`MAX_LISTED`), then a count."""
    if len(bad) == 1:
        return bad[0]
    listed = bad[:MAX_LISTED] + ([f"... and {len(bad) - MAX_LISTED} more"]
                                 if len(bad) > MAX_LISTED else [])
    return "\n".join(listed + [f"{len(bad)} unusable files, nothing written (--skip-bad leaves "
                                "them out)"])


def write_manifests(args: argparse.Namespace, root: str, splits: Dict[str, List[Utterance]]) -> str:
    """Checks every utterance of every split, then writes the splits; returns the summary line.

    Without ``args.skip_bad`` unusable files raise one ``ManifestError`` listing them (the first
    :data:`MAX_LISTED`) and nothing is written, not even the splits that were fine.
    """
    root = os.path.realpath(root)
    check_destination(args.dest)
    for split, utts in splits.items():
        check_split_name(split)
        for utt in utts:
            check_tsv_path(utt.path)
    to_check = [u.path for utts in splits.values() for u in utts if u.reason is None]
    results = iter(check_all(to_check, args.min_samples, args.sample_rate, args.workers))

    kept: Dict[str, List[Tuple[Utterance, int]]] = {}
    skipped: Dict[str, List[Tuple[str, str]]] = {}
    bad: List[str] = []
    for split, utts in splits.items():
        kept[split], skipped[split] = [], []
        for utt in utts:
            samples, reason = (0, utt.reason) if utt.reason else next(results)
            if reason is None:
                kept[split].append((utt, samples))
            elif args.skip_bad:
                skipped[split].append((utt.path, reason))
            else:
                detail = _explain(utt.path, samples, reason, args.min_samples, args.sample_rate)
                bad.append(f"{utt.path}: {detail}")
        if not kept[split] and not bad:
            reasons = [r for _, r in skipped[split]]
            detail = f"all of its files are unusable, {skip_summary(reasons)}" if reasons else "no files"
            raise ManifestError(f"split {split!r} would be empty ({detail}); nothing written")

    if bad:
        raise ManifestError(bad_files_message(bad))

    # every split's files are written together, all or none
    contents, written, stale = {}, [], []
    for split, rows in kept.items():
        exts = sorted({ext for utt, _ in rows for ext in (utt.labels or {})})
        labels = {ext: [(utt.labels or {}).get(ext, "") for utt, _ in rows] for ext in exts}
        manifest_rows = [
            (os.path.relpath(os.path.realpath(utt.path), root), samples) for utt, samples in rows
        ]
        contents.update(split_files(args.dest, split, root, manifest_rows, labels))
        if skipped[split]:
            contents[f"{split}.skipped"] = [f"{path}\t{reason}" for path, reason in skipped[split]]
        else:
            stale.append(os.path.join(args.dest, f"{split}.skipped"))
        written.append(f"{split} ({duration_summary([n for _, n in rows])})")
    write_files(args.dest, contents)
    for path in stale:  # from an earlier run: would describe files now present
        if os.path.exists(path):
            os.remove(path)

    summary = f"wrote {', '.join(written)} to {args.dest}"
    all_skipped = [reason for s in skipped.values() for _, reason in s]
    if all_skipped:
        summary += f"; {skip_summary(all_skipped)}"
    return summary


def check_destination(dest: str) -> None:
    """A ``ManifestError`` unless ``dest`` is a writable folder or can be created as one; checked
    before any audio is read, without creating anything."""
    folder = os.path.abspath(dest)
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise ManifestError(f"{dest}: cannot be an output folder: {folder} is a file")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ManifestError(f"{dest}: cannot write the output folder: {folder} is not writable")


def run_cli(main: Callable[[Optional[Sequence[str]]], str], argv=None) -> None:
    """Runs a prep script's ``main(argv) -> summary``: prints the summary, or ``error: ...`` on
    stderr and exit status 2 for bad input."""
    try:
        summary = main(argv)
    except ManifestError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(summary)
