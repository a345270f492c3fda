"""Score fairseq-generate outputs and lay them out as the paper's results table.

    python -m fairseq_vqw2v.cli.score RESULTS [--labels ltr] [--out RESULTS/table.md]

reads ``RESULTS/{system}/{decoder}/generate-{split}.txt`` (written by ``fairseq-generate
--task vqw2v_asr ... --results-path RESULTS/{system}/{decoder}``, without ``--post-process``, so
that ``T-``/``H-`` lines are label lines), scores every file with editdistance, and writes a table
with one row per system and, per decoder, the LER/WER (letters) or PER (phones) of each split,
as the paper's WSJ table (dev LER/WER, test LER/WER; no LM, then 4-gram LM), plus a bar plot
``table.png`` of the error rate by system and decoder.
"""

import argparse
import os

from . import run
from ..decoding.results import collect, format_table, plot


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, prog="python -m fairseq_vqw2v.cli.score",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="folder of {system}/{decoder}/generate-{split}.txt")
    parser.add_argument("--labels", choices=["ltr", "phn"], default="ltr")
    parser.add_argument("--out", help="markdown table to write (default RESULTS/table.md)")
    args = parser.parse_args(argv)

    def command():
        results = collect(args.results, args.labels)
        table = format_table(results, args.labels)
        out = args.out or os.path.join(args.results, "table.md")
        with open(out, "w") as f:
            f.write(table + "\n")
        plot(results, os.path.splitext(out)[0] + ".png")
        return f"{table}\n\nscored {len(results)} systems -> {out} and {os.path.splitext(out)[0]}.png"

    return run(command)


if __name__ == "__main__":
    raise SystemExit(main())
