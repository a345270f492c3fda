"""Writes the flag tables of this plugin's tasks, models and criteria, generated from their
dataclass configs:

    python -m fairseq_vqw2v.cli.flags_doc > docs/flags.md

fairseq's ``--help`` never lists a task's flags (its parser adds them after help is printed), so
these tables are where a user reads them. Each table holds the flags exactly as fairseq's own
``gen_parser_from_dataclass`` adds them to fairseq-train and fairseq-generate (a nested config's
fields become flat flags; fields that only mirror one of fairseq's own options are left out), so
that the document cannot say otherwise than the code; ``tests/test_flags_doc.py`` fails when
``docs/flags.md`` is not this command's output.
"""

import argparse
import math
from typing import Dict, List, Type

from fairseq.criterions import CRITERION_DATACLASS_REGISTRY
from fairseq.dataclass import FairseqDataclass
from fairseq.dataclass.utils import gen_parser_from_dataclass
from fairseq.models import ARCH_MODEL_NAME_REGISTRY, MODEL_DATACLASS_REGISTRY
from fairseq.tasks import TASK_DATACLASS_REGISTRY

import fairseq_vqw2v

COMMAND = "python -m fairseq_vqw2v.cli.flags_doc > docs/flags.md"


def ours(registry: Dict[str, Type[FairseqDataclass]]) -> Dict[str, Type[FairseqDataclass]]:
    """The entries of a fairseq registry whose config this package defines, by name."""
    prefix = fairseq_vqw2v.__name__ + "."
    return {name: dc for name, dc in sorted(registry.items())
            if dc is not None and dc.__module__.startswith(prefix)}


def _default(action: argparse.Action) -> str:
    if action.required:
        return "required"
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        # fairseq makes a bool field a switch to the other value, whatever its name says
        return "off" if action.const else "on (the flag turns it off)"
    value = action.default
    if value is None or value == "":
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "-inf" if value < 0 else "inf"
    return f"`{value}`"


def _cell(text) -> str:
    """Text for a markdown table cell: pipes escaped, one line."""
    return " ".join(str(text or "").split()).replace("|", "\\|")


def flag_table(config: Type[FairseqDataclass]) -> List[str]:
    """Markdown rows ``| flag | default | help |`` of one config, in declaration order."""
    parser = argparse.ArgumentParser(add_help=False)
    gen_parser_from_dataclass(parser, config())
    if not parser._actions:
        return ["No flags of its own."]
    rows = ["| flag | default | help |", "|---|---|---|"]
    for action in parser._actions:
        flag = ", ".join(f"`{s}`" for s in action.option_strings) or f"`{action.dest.upper()}`"
        help_text = action.help or ""
        if action.choices:
            help_text += f" (one of: {', '.join(map(str, action.choices))})"
        rows.append(f"| {flag} | {_cell(_default(action))} | {_cell(help_text)} |")
    return rows


def render() -> str:
    """The whole document."""
    archs: Dict[str, List[str]] = {}
    for arch, model in ARCH_MODEL_NAME_REGISTRY.items():
        archs.setdefault(model, []).append(arch)
    lines = [
        "# Flags of the tasks, models and criteria",
        "",
        f"Generated from the dataclass configs by `{COMMAND}`; do not edit by hand",
        "(`tests/test_flags_doc.py` fails when this file is out of date: rerun the command).",
        "fairseq's own flags (optimizer, checkpoints, distributed training, fairseq-generate's",
        "`--beam`, `--nbest`, `--lm-weight`) are in `fairseq-train --help` and",
        "`fairseq-generate --help`; a model's flags are defaults that its `--arch` presets change.",
        "",
    ]
    sections = (("Task", TASK_DATACLASS_REGISTRY, "--task"),
                ("Model", MODEL_DATACLASS_REGISTRY, "--arch"),
                ("Criterion", CRITERION_DATACLASS_REGISTRY, "--criterion"))
    for title, registry, selector in sections:
        for name, config in ours(registry).items():
            lines += [f"## {title} `{name}`", ""]
            if selector == "--arch":
                names = ", ".join(f"`{a}`" for a in sorted(archs.get(name, [])))
                lines += [f"`--arch`: {names}", ""]
            else:
                lines += [f"`{selector} {name}`", ""]
            lines += flag_table(config) + [""]
    return "\n".join(lines)


def main(argv=None) -> int:
    argparse.ArgumentParser(prog="python -m fairseq_vqw2v.cli.flags_doc",
                            description=__doc__.split("\n\n")[0]).parse_args(argv)
    print(render(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
