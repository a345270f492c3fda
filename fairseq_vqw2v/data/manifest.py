"""fairseq-style audio manifests and their label files: reading and writing.

A manifest ``{split}.tsv`` has the root folder on its first line, then one
``relative/path<TAB>num_samples`` line per utterance (the format of fairseq's
``examples/wav2vec/wav2vec_manifest.py``). Label files ``{split}.{ext}`` hold one line per
utterance, aligned with the manifest lines:

- ``.wrd``: words, normalised by :func:`.text_norm.normalize_words` (lower case letters and
  apostrophes, one space between words; the one convention of the whole project),
- ``.ltr``: letters separated by spaces with ``|`` closing every word (fairseq's
  ``libri_labels.py``), from :func:`.text_norm.words_to_letters`,
- ``.phn``: space-separated phones.
"""

import os
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from fairseq_vqw2v.data.text_files import decoding
from fairseq_vqw2v.errors import InputError


class ManifestError(InputError):
    """Bad manifest, label or audio input; the message starts with the file (and line) at fault."""


@dataclass
class Manifest:
    """One parsed ``{split}.tsv``: ``root`` folder, ``entries`` of (relative path, num samples)."""

    path: str
    root: str
    entries: List[Tuple[str, int]] = field(default_factory=list)

    def __len__(self):
        return len(self.entries)

    def audio_path(self, i: int) -> str:
        """Absolute path of entry ``i``."""
        return os.path.join(self.root, self.entries[i][0])


def read_lines(path: str, what: str) -> List[str]:
    """The lines of a UTF-8 text file (a BOM dropped; only ``\n``, ``\r\n`` and ``\r`` end a line:
    Unicode separators such as U+2028, which ``str.splitlines`` would split at, stay in the line);
    ``ManifestError`` naming the file and ``what`` it is when unreadable,
    ``UndecodableTextError`` (``path:line``) when not UTF-8."""
    try:
        with decoding(path), open(path, encoding="utf-8-sig") as f:
            lines = f.read().split("\n")
    except OSError as e:
        raise ManifestError(f"{path}: cannot read {what}: {e}") from e
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def read_manifest(path: str) -> Manifest:
    """Parses a manifest; a malformed line raises ``ManifestError("path:line: reason")``."""
    lines = read_lines(path, "manifest")
    if not lines or not lines[0].strip():
        raise ManifestError(f"{path}:1: expected the root folder on the first line")
    manifest = Manifest(path=path, root=lines[0].strip())
    for lineno, line in enumerate(lines[1:], start=2):
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0]:
            raise ManifestError(
                f"{path}:{lineno}: expected 'relative/path<TAB>num_samples', got {line!r}"
            )
        try:
            samples = int(parts[1])
        except ValueError:
            samples = -1
        if samples < 0:
            raise ManifestError(
                f"{path}:{lineno}: num_samples must be a non-negative integer, got {parts[1]!r}"
            )
        manifest.entries.append((parts[0], samples))
    return manifest


def _label_line(split: str, ext: str, i: int, text: str) -> str:
    if "\n" in text or "\r" in text:
        raise ManifestError(f"{split}.{ext}: label {i + 1} contains a line break: {text!r}")
    return text


def check_split_name(split: str) -> str:
    """``split`` if it can name ``{split}.tsv`` inside the output folder, else ``ManifestError``."""
    if not split or split in (".", "..") or "/" in split or os.sep in split or "\0" in split:
        raise ManifestError(f"split name {split!r}: must be a file name, without a path separator")
    return split


def check_tsv_path(path: str) -> str:
    """``path`` if a manifest line can hold it, else ``ManifestError`` naming it."""
    bad = [c for c in ("\t", "\n", "\r") if c in path]
    if bad:
        raise ManifestError(
            f"{path!r}: a path in a manifest cannot contain {' or '.join(map(repr, bad))}"
        )
    return path


def _file_mode() -> int:
    """The mode ``open()`` gives new files (0644 under the usual umask 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_split(
    dest_dir: str,
    split: str,
    root: str,
    rows: Sequence[Tuple[str, int]],
    labels: Optional[Dict[str, Sequence[str]]] = None,
) -> None:
    """Writes ``{dest_dir}/{split}.tsv`` and one ``{split}.{ext}`` per label kind, atomically.

    Args:
        rows: (path relative to ``root``, num samples) per utterance.
        labels: ext (``wrd``, ``ltr``, ``phn``, ...) -> one string per row, in row order.
    """
    write_files(dest_dir, split_files(dest_dir, split, root, rows, labels))


def split_files(
    dest_dir: str,
    split: str,
    root: str,
    rows: Sequence[Tuple[str, int]],
    labels: Optional[Dict[str, Sequence[str]]] = None,
) -> Dict[str, List[str]]:
    """The lines of ``{split}.tsv`` and its label files, checked: file name -> lines."""
    check_split_name(split)
    labels = labels or {}
    for ext, lines in labels.items():
        if len(lines) != len(rows):
            raise ManifestError(
                f"{os.path.join(dest_dir, split + '.' + ext)}: {len(lines)} labels for "
                f"{len(rows)} manifest rows"
            )
    check_tsv_path(root)
    contents = {f"{split}.tsv": [root] + [f"{check_tsv_path(p)}\t{n}" for p, n in rows]}
    for ext, lines in labels.items():
        contents[f"{split}.{ext}"] = [_label_line(split, ext, i, t) for i, t in enumerate(lines)]
    return contents


def write_files(dest_dir: str, contents: Dict[str, List[str]]) -> None:
    """Writes every ``name -> lines`` of ``contents`` into ``dest_dir``, all or none.

    Everything is first written to temporary files in ``dest_dir`` and renamed only once all of
    them are complete, so an error leaves no half-written manifest behind.
    """
    try:
        os.makedirs(dest_dir, exist_ok=True)
    except OSError as e:
        raise ManifestError(f"{dest_dir}: cannot create the output folder: {e}") from e
    mode = _file_mode()
    temps = {}
    try:
        for name, lines in contents.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=dest_dir)
            temps[name] = tmp
            os.fchmod(fd, mode)  # mkstemp makes 0600 files; manifests are shared like any output
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write("".join(line + "\n" for line in lines))
        for name, tmp in temps.items():
            os.replace(tmp, os.path.join(dest_dir, name))
    except OSError as e:
        raise ManifestError(f"{dest_dir}: cannot write manifests: {e}") from e
    finally:
        for tmp in temps.values():
            if os.path.exists(tmp):
                os.remove(tmp)
