"""Converts fairseq reference checkpoints into this plugin's models.

    python -m fairseq_vqw2v.cli.convert wav2vec SRC DEST
    python -m fairseq_vqw2v.cli.convert roberta SRC DEST
"""

import argparse
import sys
from typing import Callable, Dict, Tuple

from . import run


def _convert_wav2vec(args) -> str:
    from fairseq_vqw2v.interop.wav2vec import convert_wav2vec_checkpoint

    cfg = convert_wav2vec_checkpoint(args.src, args.dest)
    return f"wav2vec -> vq_wav2vec (vq_type={cfg.get('vq_type', 'none')}): {args.dest}"


def _convert_roberta(args) -> str:
    from fairseq_vqw2v.interop.roberta import convert_roberta_checkpoint

    return f"roberta -> unit_bert: {convert_roberta_checkpoint(args.src, args.dest)}"


# subcommand -> (help, converter returning a one-line summary); add a row per reference model
CONVERTERS: Dict[str, Tuple[str, Callable[[argparse.Namespace], str]]] = {
    "wav2vec": ("fairseq 'wav2vec' checkpoint (any vq_type) -> vq_wav2vec", _convert_wav2vec),
    "roberta": ("fairseq 'roberta' masked LM on units (model.pt or folder with dict.txt) -> "
                "unit_bert", _convert_roberta),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False, prog="python -m fairseq_vqw2v.cli.convert", description=__doc__)
    sub = parser.add_subparsers(dest="kind", required=True)
    for name, (help_text, _) in CONVERTERS.items():
        p = sub.add_parser(name, help=help_text)
        p.add_argument("src", help="fairseq checkpoint to read")
        p.add_argument("dest", help="checkpoint to write")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import fairseq_vqw2v  # noqa: F401  registers our models before checkpoints are built

    return run(lambda: f"converted {CONVERTERS[args.kind][1](args)}")


if __name__ == "__main__":
    sys.exit(main())
