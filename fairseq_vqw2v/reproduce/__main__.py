"""Reproduces the paper's tables: ``python -m fairseq_vqw2v.reproduce --out results/``.

Runs every stage of :mod:`fairseq_vqw2v.reproduce.pipeline` that is not complete (on the embedded
corpus by default, or ``--manifest-dir`` for a prepared corpus), writes the exact commands to
``OUT/commands.sh``, each stage's output to ``OUT/logs/``, then ``OUT/tables.md`` and the plots.
A rerun skips complete stages, resumes interrupted ones from their last checkpoint, and reruns a
stage whose settings changed together with everything downstream of it.
"""

import argparse
import ast
import dataclasses
import json
import logging
import os
import sys
import time

from ..constants import PRETRAIN_SPLIT, SPLITS
from .pipeline import (DEMO_SYSTEMS, PRESETS, Layout, build_seed_stages, chain_name, default_labels,
                       demo_stages, names_other_chain)
from .stages import Runner, select, tool_path_env, write_commands
from .tables import best_row, write_tables

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _display(path: str) -> str:
    """``path`` relative to the working directory when it lies inside it (readable commands)."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def parse_set(items, preset):
    """``--set name=value`` overrides of preset fields; values are Python literals
    (``am_updates=200``, ``am_flags=['--max-tokens', '6000']``), never evaluated code. For a
    dict field, a dict updates the entries it names (``am_lr={'ltr/gumbel': '4e-3'}``; an entry
    the field lacks is refused) and any other value sets every entry (``am_lr=4e-3``)."""
    changes = {}
    names = {f.name: f for f in dataclasses.fields(preset)}
    for item in items or []:
        name, sep, text = item.partition("=")
        if not sep or name not in names or name in ("name", "description"):
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of "
                             f"{', '.join(n for n in names if n not in ('name', 'description'))}")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        current = changes.get(name, getattr(preset, name))
        if isinstance(current, dict) and not isinstance(value, dict):
            # as typed for a field of strings: am_lr=8e-3 is the preset's '8e-3', not '0.008'
            strings = all(isinstance(v, str) for v in current.values())
            value = dict.fromkeys(current, text if strings else value)
        elif isinstance(current, dict):
            unknown = sorted(set(value) - set(current), key=str)
            if unknown:
                raise ValueError(f"--set {item!r}: {name} has no entry {unknown[0]!r} (it has "
                                 f"{', '.join(map(str, current))})")
            value = {**current, **value}
        changes[name] = value
    return dataclasses.replace(preset, **changes)


def corpus_summary(corpus: str) -> dict:
    """Corpus facts for the tables: folder, hours per split, and the generator's parameters."""
    from ..data.audio_checks import duration_summary
    from ..data.manifest import read_manifest

    facts = {"folder": corpus}
    for split in SPLITS + (PRETRAIN_SPLIT,):
        path = os.path.join(corpus, f"{split}.tsv")
        if os.path.exists(path):
            facts[split] = duration_summary([n for _, n in read_manifest(path).entries])
    meta = os.path.join(corpus, "corpus.json")
    if os.path.exists(meta):
        with open(meta) as f:
            facts["embedded corpus parameters"] = json.dumps(json.load(f).get("params", {}))
    return facts


def _for_seeds(patterns, seeds):
    """``--stages`` globs for every chain: ``am/*`` also selects ``seed2/am/*`` and so on; a glob
    that names a chain itself (``seed3/am/*``) selects in that chain alone."""
    prefixes = [chain_name(seed, seeds[0]) for seed in seeds]
    return [f"{p}/{g}" if p else g for g in patterns
            for p in ([""] if names_other_chain(g) else prefixes)
            if not (p and g.split("/")[0] in ("corpus", "lm"))]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fairseq_vqw2v.reproduce",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results", help="output folder (default: results)")
    parser.add_argument("--manifest-dir", help="a prepared corpus ({split}.tsv + .ltr/.phn for "
                        "train, valid, test; from manifests/); default: the embedded corpus in OUT/corpus")
    parser.add_argument("--lm-text", help="LM text, one sentence per line (default: "
                        "CORPUS/lm/lm.txt, else CORPUS/train.wrd)")
    parser.add_argument("--labels", help="comma-separated label kinds (ltr, phn; default: those "
                        "the corpus has)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="embedded")
    parser.add_argument("--set", action="append", metavar="FIELD=VALUE",
                        help="override a preset field (repeatable), e.g. am_updates=200; for a dict "
                        "field, a dict changes the entries it names (am_lr={'ltr/gumbel': '4e-3'}) "
                        "and any other value sets them all (am_lr=4e-3)")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of the embedded corpus and of the first training chain")
    parser.add_argument("--seeds", type=int, default=1,
                        help="training chains (pretraining, units, BERT, features, acoustic "
                        "models, decoding) with seeds SEED, SEED+1, ...: the tables report each "
                        "acoustic-model row as mean and standard deviation over the chains; the "
                        "first chain is OUT/ itself, the others OUT/seed{s}/ (corpus and LMs shared)")
    parser.add_argument("--stages", help="comma-separated globs of stage names to run (with the "
                        "stages they need), e.g. 'pretrain/*,units/*'; with --seeds a glob "
                        "selects in every chain, 'seed3/am/*' in that chain alone")
    parser.add_argument("--demo", action="store_true",
                        help="only the letters table of `make demo` (systems "
                        f"{', '.join(DEMO_SYSTEMS)}; no LM and 4-gram LM): the same stages as "
                        "the full run, which a later run without --demo reuses")
    parser.add_argument("--dry-run", action="store_true",
                        help="write OUT/commands.sh and print the commands without running them")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="stages run at once (default: 2, or 1 on one core); each gets "
                        "cores/jobs threads unless OMP_NUM_THREADS is set")
    args = parser.parse_args(argv)
    if args.demo and args.stages:
        parser.error("--demo selects the stages itself: give --demo or --stages, not both")
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.time()
    # importing fairseq leaves the root logger at DEBUG (matplotlib would flood the console);
    # the stages' own output goes to their logs
    logging.basicConfig(format="%(levelname)s | %(name)s | %(message)s", level=logging.WARNING, force=True)
    try:
        preset = parse_set(args.set, PRESETS[args.preset])
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = _display(os.path.abspath(args.out))
    embedded = args.manifest_dir is None
    corpus = os.path.join(out, "corpus") if embedded else _display(os.path.abspath(args.manifest_dir))
    if not embedded and not os.path.exists(os.path.join(corpus, "train.tsv")):
        print(f"error: {corpus}/train.tsv: not a manifest folder (see manifests/)", file=sys.stderr)
        return 2
    lm_text = args.lm_text or os.path.join(corpus, "lm", "lm.txt")
    if not embedded and not args.lm_text and not os.path.exists(lm_text):
        lm_text = os.path.join(corpus, "train.wrd")
    labels = args.labels.split(",") if args.labels else default_labels(corpus, embedded)
    if not labels:
        print(f"error: {corpus}: no .ltr or .phn labels for train, valid and test", file=sys.stderr)
        return 2
    layout = Layout(out=out, corpus=corpus, lm_text=lm_text, user_dir=_display(PACKAGE_DIR),
                    labels=labels, embedded=embedded, seed=args.seed)
    seeds = list(range(args.seed, args.seed + args.seeds))
    try:
        every_stage = build_seed_stages(layout, preset, seeds)
        patterns = (demo_stages(seeds) if args.demo
                    else _for_seeds(args.stages.split(","), seeds) if args.stages else None)
        stages = select(every_stage, patterns)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // max(1, args.jobs)))
    env = {**tool_path_env(), "OMP_NUM_THREADS": threads}
    os.makedirs(out, exist_ok=True)
    commands_path = os.path.join(out, "commands.sh")
    write_commands(commands_path, stages, env,
                   f"python -m fairseq_vqw2v.reproduce, preset {preset.name}: run from {os.getcwd()}")
    if args.dry_run:
        with open(commands_path) as f:
            print(f.read(), end="")
        print(f"dry run: {len(stages)} stages, "
              f"{sum(len(s.commands) for s in stages)} commands -> {commands_path}")
        return 0

    print(f"reproduce: preset {preset.name} ({preset.description}), corpus {corpus}, "
          f"{len(stages)} stages, {args.jobs} at a time, OMP_NUM_THREADS={threads} -> {out}")
    runner = Runner(out, stages, env, jobs=args.jobs, print_fn=lambda s: print(s, flush=True))
    ok = runner.run()
    # the tables show every stage that is complete, run now or before (not only --stages)
    records = Runner(out, every_stage, env)
    logs = {s.name: records.log_path(s) for s in every_stage if s.commands[-1].trains}
    config = {"preset": preset.settings(), "labels": labels, "seeds": seeds,
              "lm_text": lm_text, "jobs": args.jobs, "OMP_NUM_THREADS": threads}
    chains = [chain_name(seed, seeds[0]) for seed in seeds]
    tables, letters = write_tables(out, config, corpus_summary(corpus), records.elapsed(), logs,
                                   chains, am_updates=preset.am_updates,
                                   restarted=records.restarted())
    best = best_row(letters)
    elapsed = time.time() - start
    print(f"reproduce {'done' if ok else 'STOPPED'} in {elapsed / 60:.1f} min: "
          f"{len(runner.ran)} stages run, {len(runner.skipped)} skipped"
          + (f"; best test WER {best[2]:.2f} ({best[0]}, {best[1]})" if best else "")
          + f" -> {tables}, commands {commands_path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
