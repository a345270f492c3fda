"""Manifests and phone/word labels for the TIMIT layout.

    python -m manifests.timit ROOT --dest DIR [--test-set core|complete] [--phones 39|61]

ROOT holds ``TRAIN/`` and ``TEST/`` with ``DR*/SPEAKER/UTT.{WAV,PHN,WRD,TXT}`` (any letter case;
the ``.WAV`` files are NIST SPHERE in the original, RIFF wav also works). Splits, as in every
TIMIT phone recognition paper since Lee and Hon (1989):

- ``train``: all TRAIN speakers (462), SI and SX sentences (3696 utterances);
- ``valid``: the standard 50-speaker development set from TEST (400 utterances);
- ``test``: the 24-speaker core test set (192 utterances), or with ``--test-set complete`` all
  168 TEST speakers (1344 utterances; this includes the 50 valid speakers).

The SA dialect sentences (read by every speaker) are always excluded. Labels: ``.phn`` holds the
``.PHN`` phones folded to the 39 set (:mod:`fairseq_vqw2v.data.phones`; ``--phones 61`` keeps the
originals), ``.wrd`` the words of ``.WRD`` (or of ``.TXT`` when there is no ``.WRD``) in the
project's word convention, ``.ltr`` their letters. A ``.WAV`` without a ``.PHN``, or with an
empty one, is an error (or a skip with ``--skip-bad``); a malformed or unknown phone line is an
error naming file and line.
"""

import argparse
import os
from typing import Dict, List, Optional

from fairseq_vqw2v.data.manifest import ManifestError, read_lines
from fairseq_vqw2v.data.text_norm import normalize_words, words_to_letters
from fairseq_vqw2v.data.phones import FOLD_61_TO_39, fold_timit_phones

from .common import (
    EMPTY_TRANSCRIPT,
    MISSING_TRANSCRIPT,
    Utterance,
    existing_folder,
    prep_parser,
    run_cli,
    write_manifests,
)

# The TIMIT documentation's core test set (timit/doc/testset.doc), also Kaldi's
# egs/timit/s5/conf/test_spk.list and fairseq's
# examples/wav2vec/unsupervised/config/timit_matched/test.uid.
CORE_TEST_SPEAKERS = frozenset(
    "FDHC0 FELC0 FJLM0 FMGD0 FMLD0 FNLP0 FPAS0 FPKT0 MBPM0 MCMJ0 MDAB0 MGRT0 "
    "MJDH0 MJLN0 MJMP0 MKLT0 MLLL0 MLNT0 MNJM0 MPAM0 MTAS1 MTLS0 MWBT0 MWEW0".split()
)

# The 50-speaker development set of Halberstadt (1998), Kaldi's egs/timit/s5/conf/dev_spk.list and
# fairseq's examples/wav2vec/unsupervised/config/timit_matched/valid.uid.
DEV_SPEAKERS = frozenset(
    "FADG0 FAKS0 FCAL1 FCMH0 FDAC1 FDMS0 FDRW0 FEDW0 FGJD0 FJEM0 FJMG0 FJSJ0 FKMS0 FMAH0 FMML0 "
    "FNMR0 FREW0 FSEM0 MAJC0 MBDG0 MBNS0 MBWM0 MCSH0 MDLF0 MDLS0 MDVC0 MERS0 MGJF0 MGLB0 MGWT0 "
    "MJAR0 MJFC0 MJSW0 MMDB1 MMDM2 MMJR0 MMWH0 MPDF0 MRCS0 MREB0 MRJM4 MRJR0 MROA0 MRTK0 MRWS1 "
    "MTAA0 MTDT0 MTEB0 MTHC0 MWJG0".split()
)


def _sibling(stem: str, ext: str) -> Optional[str]:
    """``stem.EXT`` or ``stem.ext``, whichever exists (TIMIT copies differ in letter case)."""
    for candidate in (f"{stem}.{ext.upper()}", f"{stem}.{ext.lower()}"):
        if os.path.exists(candidate):
            return candidate
    return None


def read_phones(path: str) -> List[str]:
    """The phone labels of a ``.PHN`` file (``start end phone`` lines)."""
    phones = []
    for lineno, line in enumerate(read_lines(path, "phone labels"), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3:
            raise ManifestError(f"{path}:{lineno}: expected 'start end phone', got {line!r}")
        if parts[2] not in FOLD_61_TO_39:
            raise ManifestError(f"{path}:{lineno}: unknown TIMIT phone {parts[2]!r}")
        phones.append(parts[2])
    return phones


def read_words(stem: str) -> str:
    """Words of ``stem.WRD`` (``start end word`` lines), else of ``stem.TXT`` (``start end
    sentence``), normalised; empty when neither exists."""
    wrd = _sibling(stem, "wrd")
    if wrd is not None:
        words = []
        for lineno, line in enumerate(read_lines(wrd, "word labels"), start=1):
            parts = line.split()
            if parts and len(parts) != 3:
                raise ManifestError(f"{wrd}:{lineno}: expected 'start end word', got {line!r}")
            words.extend(parts[2:])
        return normalize_words(" ".join(words))
    txt = _sibling(stem, "txt")
    if txt is not None:
        return normalize_words(" ".join(" ".join(read_lines(txt, "transcript")).split()[2:]))
    return ""


def utterance(wav: str, stem: str, phone_set: int) -> Utterance:
    """The audio file ``wav`` with the labels of ``stem.PHN`` and ``stem.WRD`` (or ``.TXT``)."""
    phn = _sibling(stem, "phn")
    if phn is None:
        return Utterance(wav, reason=MISSING_TRANSCRIPT)
    phones = read_phones(phn)
    if not phones:
        return Utterance(wav, reason=EMPTY_TRANSCRIPT)
    if phone_set == 39:
        phones = fold_timit_phones(phones)
    words = read_words(stem)
    labels = {"phn": " ".join(phones), "wrd": words, "ltr": words_to_letters(words)}
    return Utterance(wav, labels=labels)


def find_splits(root: str, test_set: str, phone_set: int) -> Dict[str, List[Utterance]]:
    """{train, valid, test} -> utterances in sorted path order (SA sentences left out)."""
    splits: Dict[str, List[Utterance]] = {"train": [], "valid": [], "test": []}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root).split(os.sep)
        if len(rel) < 2:
            continue
        corpus_set, speaker = rel[0].upper(), rel[-1].upper()
        seen = set()
        for name in sorted(filenames):
            # some copies hold both SI648.WAV (SPHERE) and a converted SI648.WAV.wav: use one
            base, _, exts = name.partition(".")
            if exts.lower() not in ("wav", "wav.wav") or base.upper().startswith("SA"):
                continue
            if base in seen:
                continue
            seen.add(base)
            utt = utterance(os.path.join(dirpath, name), os.path.join(dirpath, base), phone_set)
            targets = []
            if corpus_set == "TRAIN":
                targets.append("train")
            elif corpus_set == "TEST":
                if speaker in DEV_SPEAKERS:
                    targets.append("valid")
                if test_set == "complete" or speaker in CORE_TEST_SPEAKERS:
                    targets.append("test")
            for split in targets:
                splits[split].append(utt)
    for split, utts in splits.items():
        if not utts:
            raise ManifestError(f"{root}: no {split} utterances found (expected TRAIN/ and TEST/)")
    return splits


def get_parser() -> argparse.ArgumentParser:
    parser = prep_parser(__doc__, "TIMIT folder holding TRAIN/ and TEST/")
    parser.add_argument(
        "--test-set",
        choices=("core", "complete"),
        default="core",
        help="core: 24 speakers, 192 utterances; complete: all 168 TEST speakers",
    )
    parser.add_argument(
        "--phones",
        type=int,
        choices=(39, 61),
        default=39,
        help=".phn phone set: 39 folded (Lee and Hon 1989) or the 61 original labels",
    )
    return parser


def main(argv=None) -> str:
    args = get_parser().parse_args(argv)
    root = existing_folder(args.root)
    return write_manifests(args, root, find_splits(root, args.test_set, args.phones))


if __name__ == "__main__":
    run_cli(main)
