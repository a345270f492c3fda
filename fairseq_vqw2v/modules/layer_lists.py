"""Config strings that fairseq would ``eval()``, read without ``eval``: literals and conv layer
lists such as ``"[(512, 10, 5)] + [(512, 3, 2)] * 4"``.

One parser for every layer list (wav2vec's ``(dim, kernel, stride)``, wav2letter's
``(out_channels, kernel, stride, dropout)``), so that a bad list gets the same error wherever it
comes from: a command line, an arch preset or an untrusted checkpoint (an ``eval`` without builtins
is escapable, so nothing here ever evaluates code).
"""

import ast
from typing import Any, List, Sequence, Tuple

MAX_OPTION_CHARS = 10_000  # a layer list is a few hundred characters
MAX_REPEAT = 10_000  # ``[(512, 3, 2)] * n``

WAV2VEC_LAYER_FIELDS = ("dim", "kernel", "stride")
"""fairseq's ``conv_feature_layers`` / ``conv_aggregator_layers``."""

W2L_LAYER_FIELDS = ("out_channels", "kernel", "stride", "dropout")
"""The wav2letter stack's layers; ``dropout`` is a probability, every other field a positive int."""


def short_repr(text: str, limit: int = 120) -> str:
    """``repr`` of ``text`` cut at ``limit`` characters, for error messages."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def literal_option(text: str, name: str) -> Any:
    """The value of a config string that fairseq would ``eval()``, computed without ``eval``.

    Allowed: numbers, strings, booleans, ``None``, unary minus, lists, tuples, dicts, and ``+`` /
    ``* n`` on them (``[(512, 10, 5)] + [(512, 3, 2)] * 4``, the form of fairseq's own defaults);
    no names, calls or attributes. Anything else raises ``ValueError`` naming ``name``.
    """

    def refuse(reason):
        return ValueError(f"{name} is not a literal: {short_repr(text)} ({reason})")

    if len(text) > MAX_OPTION_CHARS:
        raise refuse(f"{len(text)} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise refuse(f"does not parse: {getattr(e, 'msg', e)}") from None

    def value(node):
        if isinstance(node, ast.Constant) and (
            node.value is None or isinstance(node.value, (bool, int, float, str))
        ):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            operand = value(node.operand)
            if not isinstance(operand, (int, float)):
                raise refuse("minus of a non-number")
            return -operand
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [value(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Dict) and None not in node.keys:
            return {value(k): value(v) for k, v in zip(node.keys, node.values)}
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Mult) and any(
                isinstance(n, int) and abs(n) > MAX_REPEAT for n in (left, right)
            ):
                raise refuse(f"repetition over {MAX_REPEAT}")
            try:
                return left + right if isinstance(node.op, ast.Add) else left * right
            except TypeError as e:
                raise refuse(str(e)) from None
        raise refuse(f"{type(node).__name__} {short_repr(ast.unparse(node), 60)} is not allowed")

    return value(tree.body)


def parse_layer_list(text: str, name: str, fields: Sequence[str]) -> List[Tuple]:
    """A layer list string ``[(field, ...), ...]`` (see :func:`literal_option`) -> its layers,
    checked by :func:`check_layer_list`; ``ValueError`` naming ``name`` and quoting ``text``."""
    if not isinstance(text, str):
        raise ValueError(f"{name} is not a literal layer list: a {type(text).__name__}, not a string")
    try:
        layers = literal_option(text, name)
    except ValueError as e:
        raise ValueError(str(e).replace("is not a literal:", "is not a literal layer list:", 1))
    return check_layer_list(layers, name, fields, short_repr(text))


def check_layer_list(layers: Any, name: str, fields: Sequence[str], shown: str = "") -> List[Tuple]:
    """``layers`` as a list of tuples of ``fields``: each a positive int, except ``dropout`` in
    [0, 1) (a float); ``ValueError`` naming ``name`` (and ``shown``, the text they came from)."""
    form = f"[({', '.join(fields)}), ...]"

    def refuse(reason):
        where = f"{shown} " if shown else ""
        return ValueError(f"{name} is not a literal layer list: {where}({reason})")

    if not isinstance(layers, (list, tuple)) or not layers:
        raise refuse(f"expected a non-empty {form}")
    checked = []
    for i, layer in enumerate(layers):
        if not isinstance(layer, (list, tuple)) or len(layer) != len(fields):
            raise refuse(f"layer {i} is {layer!r}, expected {form}")
        for field, value in zip(fields, layer):
            if field == "dropout":
                if type(value) not in (int, float) or not 0 <= value < 1:
                    raise refuse(f"layer {i} dropout must be in [0, 1), got {value!r}")
            elif type(value) is not int or value < 1:
                raise refuse(f"layer {i} {field} must be a positive int, got {value!r}")
        checked.append(tuple(float(v) if f == "dropout" else v for f, v in zip(fields, layer)))
    return checked
