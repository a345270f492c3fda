"""Loading fairseq checkpoints safely: the one place this package reads a checkpoint file.

Two dangers, both refused here with a :class:`CheckpointError` naming the file:

- unpickling: torch >= 2.6 refuses legacy fairseq checkpoints because they pickle an
  ``argparse.Namespace`` (and sometimes omegaconf containers). Rather than switching the safety off,
  we allow-list exactly the classes fairseq checkpoints are known to hold, and only while loading;
- configs that run code: fairseq ``eval()``s some option strings when it builds a model (e.g.
  ``conv_feature_layers`` of wav2vec / wav2vec 2.0 / HuBERT, fconv's layer specs); an ``eval``
  without builtins is escapable, so every such option of a loaded config must be a literal
  (:func:`literal_option`) before anything is built from it.

Files that are not checkpoints (empty, text, truncated, a bare tensor, a dict without ``model``)
get one clear error too, never ``EOFError`` or torch's advice to retry with ``weights_only=False``;
:func:`install_fairseq_checks` puts the same checks in front of fairseq's own loading, which
``fairseq-generate --path`` and ``fairseq-train --restore-file`` reach before any code of ours.
"""

import argparse
import collections
import contextlib
import glob
import os
import pickle
import re
import zipfile
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from fairseq import checkpoint_utils
from fairseq.models import ARCH_MODEL_REGISTRY, MODEL_REGISTRY

from .modules.layer_lists import WAV2VEC_LAYER_FIELDS, literal_option, parse_layer_list, short_repr

from .errors import InputError, MissingInputError


class CheckpointError(InputError):
    """A file that is not a usable fairseq checkpoint; the message starts with its path."""


# Options that fairseq code eval()s when building a model (wav2vec, wav2vec 2.0, HuBERT,
# s2t_wav_transformer, fconv, fconv_self_att, fconv_lm, lightconv_lm, transformer_lm,
# MultiheadAttention's xformers config), a dataset, optimizer or criterion; found by grepping
# fairseq 0.12 for eval( on config values.
EVALUATED_OPTIONS = frozenset({
    "conv_feature_layers", "conv_aggregator_layers", "encoder_layers", "decoder_layers",
    "encoder_attention", "decoder_attention", "self_attention", "project_input",
    "gated_attention", "downsample", "pretrained", "character_filters", "adaptive_softmax_cutoff",
    "xformers_att_config", "feature_encoder_spec", "adam_betas", "adamax_betas", "lamb_betas",
    "adafactor_eps", "wer_args", "left_pad_source", "left_pad_target",
})
# ... of which these are conv stacks ``[(dim, kernel, stride), ...]``
LAYER_LIST_OPTIONS = frozenset({"conv_feature_layers", "conv_aggregator_layers"})
def _options(cfg, prefix: str) -> Iterator[Tuple[str, str, Any]]:
    """(dotted path, key, value) of every entry of a config tree (dicts, omegaconf, Namespaces)."""
    if isinstance(cfg, argparse.Namespace):
        items = vars(cfg).items()
    elif isinstance(cfg, (dict, DictConfig)):
        items = cfg.items()
    elif isinstance(cfg, (list, tuple, ListConfig)):
        items = ((str(i), v) for i, v in enumerate(cfg))
    else:
        return
    for key, value in items:
        path = f"{prefix}.{key}"
        yield path, str(key), value
        yield from _options(value, path)


def check_config_literals(cfg, name: str = "cfg", source: Optional[str] = None) -> None:
    """Raises ``ValueError`` (:class:`CheckpointError` with ``source``: ``"{source}: {path} ..."``)
    if any option of config tree ``cfg`` that fairseq ``eval()``s is not a literal, or a conv
    layer list is malformed. Run it on every config before fairseq builds anything from it."""
    if isinstance(cfg, DictConfig):
        # a DictConfig with unresolvable interpolations cannot be iterated with values
        cfg = OmegaConf.to_container(cfg, resolve=False)
    for path, key, value in _options(cfg, name):
        if not isinstance(value, str) or key not in EVALUATED_OPTIONS or value.startswith("${"):
            continue  # an interpolation resolves to another option, itself checked
        try:
            if key in LAYER_LIST_OPTIONS:
                parse_layer_list(value, path, WAV2VEC_LAYER_FIELDS)
            else:
                literal_option(value, path)
        except ValueError as e:
            if source is None:
                raise
            raise CheckpointError(f"{source}: {e}") from None


def _fairseq_checkpoint_globals():
    """Classes that fairseq (0.9 - 0.12) pickles into its checkpoints besides tensors."""
    allowed = [argparse.Namespace, collections.OrderedDict, collections.defaultdict]
    try:
        import omegaconf
        from omegaconf import base, nodes

        allowed += [
            omegaconf.DictConfig,
            omegaconf.ListConfig,
            base.ContainerMetadata,
            base.Metadata,
            nodes.AnyNode,
            nodes.StringNode,
            nodes.IntegerNode,
            nodes.FloatNode,
            nodes.BooleanNode,
            nodes.EnumNode,
        ]
    except ImportError:  # omegaconf is a fairseq dependency; old checkpoints never need it
        pass
    import numpy as np

    allowed += [np.dtype, np.core.multiarray.scalar, np.core.multiarray._reconstruct, np.ndarray]
    allowed += [type(np.dtype(t)) for t in ("float32", "float64", "int64", "int32")]
    return allowed


@contextlib.contextmanager
def fairseq_safe_globals():
    """Allow-lists fairseq's checkpoint contents for ``torch.load(weights_only=True)``."""
    with torch.serialization.safe_globals(_fairseq_checkpoint_globals()):
        yield


ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since torch 1.6
PICKLE_PROTO = 0x80  # legacy torch.save: a pickle, protocol >= 2


def _refuse_non_checkpoint_file(path: str) -> None:
    """Names what ``path`` is when a glance at its bytes shows it cannot be a torch file."""
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(f"{path}: not a checkpoint: empty file (0 bytes)")
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(ZIP_MAGIC) or head[0] == PICKLE_PROTO:
        return
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and "\x00" not in text:
        first = text.splitlines()[0] if text.strip() else ""
        raise CheckpointError(f"{path}: not a checkpoint: a text file (starts with {short_repr(first, 40)})")
    raise CheckpointError(f"{path}: not a checkpoint: not a torch.save file (starts with {head[:8]!r})")


def is_truncated(path: str) -> bool:
    """A zip-format torch checkpoint cut short (its central directory, written last, is missing):
    what a kill during saving leaves. Legacy pickle checkpoints cannot be told apart cheaply."""
    with open(path, "rb") as f:
        zipped = f.read(4) == ZIP_MAGIC
    return zipped and not zipfile.is_zipfile(path)


def restore_path(save_dir: str, restore_file: str) -> str:
    """The checkpoint fairseq-train resumes from: ``restore_file``, relative to ``save_dir``."""
    return restore_file if os.path.isabs(restore_file) else os.path.join(save_dir, restore_file)


def check_restore_file(save_dir: str, restore_file: str = "checkpoint_last.pt") -> None:
    """Before fairseq-train resumes from ``save_dir/restore_file``: a truncated one raises
    :class:`CheckpointError` naming it and the newest intact checkpoint of ``save_dir``."""
    path = restore_path(save_dir, restore_file)
    if not os.path.isfile(path) or os.path.getsize(path) == 0 or not is_truncated(path):
        return
    others = sorted(
        (p for p in glob.glob(os.path.join(save_dir, "checkpoint*.pt"))
         if os.path.abspath(p) != os.path.abspath(path) and not is_truncated(p)),
        key=os.path.getmtime, reverse=True,
    )
    advice = (f"resume from the newest intact one with --restore-file {others[0]}" if others
              else "no intact checkpoint is left in the folder: remove it to start afresh")
    raise CheckpointError(f"{path}: truncated checkpoint (the run was killed while saving?); {advice}")


def _refuse_unloadable_file(path: str) -> None:
    """What can be told from a file's bytes alone: not a torch file, or a truncated zip one."""
    _refuse_non_checkpoint_file(path)
    if is_truncated(path):
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint (its zip directory, "
                              "written last, is missing)")


def install_fairseq_checks() -> None:
    """Makes fairseq's ``checkpoint_utils.load_checkpoint_to_cpu`` (``fairseq-generate --path``,
    ``--restore-file``, fairseq models loading a pretrained one) refuse with a
    :class:`CheckpointError` a local file that is not a checkpoint or is truncated, then load it
    as fairseq does. Run when the plugin is imported; idempotent."""
    fairseq_load = checkpoint_utils.load_checkpoint_to_cpu
    if getattr(fairseq_load, "checked_by_fairseq_vqw2v", False):
        return

    def load_checkpoint_to_cpu(path, arg_overrides=None, load_on_all_ranks=False):
        if os.path.isfile(path):  # remote paths are fairseq's PathManager's business
            _refuse_unloadable_file(path)
        return fairseq_load(path, arg_overrides, load_on_all_ranks)

    load_checkpoint_to_cpu.checked_by_fairseq_vqw2v = True
    load_checkpoint_to_cpu.__doc__ = fairseq_load.__doc__
    checkpoint_utils.load_checkpoint_to_cpu = load_checkpoint_to_cpu


def _torch_load(path: str, mmap: bool = False):
    _refuse_non_checkpoint_file(path)
    try:
        with fairseq_safe_globals():
            # only torch.save's zip format can be mapped; a legacy file is read whole
            return torch.load(path, map_location="cpu", weights_only=True,
                              mmap=mmap and zipfile.is_zipfile(path))
    except pickle.UnpicklingError as e:
        # torch's message suggests weights_only=False: never pass that advice on
        refused = re.search(r"GLOBAL ([\w.]+)", str(e))
        if refused:
            raise CheckpointError(
                f"{path}: refused: it pickles {refused.group(1)}, which no fairseq checkpoint "
                "holds (loading it could run code)"
            ) from None
        reason = str(e).splitlines()[0][:200] if "Weights only" not in str(e) else "unpickling refused"
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({reason})") from None
    except (EOFError, RuntimeError, LookupError, ValueError, AttributeError, TypeError) as e:
        reason = str(e).split(". ")[0][:200] or "ends early"
        raise CheckpointError(
            f"{path}: truncated or corrupt checkpoint ({type(e).__name__}: {reason})"
        ) from None


def _check_envelope(path: str, state) -> None:
    if torch.is_tensor(state):
        raise CheckpointError(f"{path}: not a fairseq checkpoint: a bare tensor")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a fairseq checkpoint: a {type(state).__name__}")
    if "model" not in state:
        keys = ", ".join(map(repr, list(state)[:5]))
        raise CheckpointError(
            f"{path}: not a fairseq checkpoint: a dict without 'model' (keys: {keys or 'none'})"
        )
    if not isinstance(state["model"], dict):
        raise CheckpointError(f"{path}: not a fairseq checkpoint: 'model' is not a state dict")
    if state.get("cfg") is None and state.get("args") is None:
        raise CheckpointError(
            f"{path}: not a fairseq checkpoint: no 'cfg' or 'args' (weights without a config)"
        )


def fairseq_envelope(cfg, weights, args=None, criterion_name: str = "", num_updates: int = 0
                     ) -> Dict[str, Any]:
    """A checkpoint as fairseq-train saves it, in plain containers, around ``cfg`` (a dict) and
    ``weights`` (a state dict): what the roberta converter writes and what fairseq's loaders and
    ours accept."""
    return {
        "args": args, "cfg": cfg, "model": weights,
        "optimizer_history": [{"criterion_name": criterion_name, "optimizer_name": "none",
                               "lr_scheduler_state": {"best": None}, "num_updates": num_updates}],
        "extra_state": {"train_iterator": {"epoch": 1, "iterations_in_epoch": 0}},
        "last_optimizer_state": None,
    }


def load_fairseq_checkpoint(path: str, mmap: bool = False) -> Dict[str, Any]:
    """Loads any fairseq checkpoint (dataclass ``cfg`` or legacy ``args``) to CPU, safely.

    ``mmap`` maps the weights from the file instead of reading them: for a caller that reads
    only the config or the training state, whatever the model's size.

    Returns fairseq's upgraded state dict: ``model``, ``cfg`` (an omegaconf config, converted from
    ``args`` for legacy checkpoints) and training state. Raises :class:`CheckpointError` for a
    file that is not a fairseq checkpoint or whose config has an option fairseq would ``eval()``
    that is not a literal (checked before fairseq touches the config); ``FileNotFoundError``.
    """
    if not os.path.isfile(path):
        raise MissingInputError(f"{path}: no such checkpoint file")
    state = _torch_load(path, mmap)
    _check_envelope(path, state)
    for key in ("args", "cfg"):
        check_config_literals(state.get(key), key, source=path)
    # what fairseq's load_checkpoint_to_cpu does after torch.load (it would load the file again)
    try:
        if state.get("cfg") is not None:
            state["cfg"] = OmegaConf.create(state["cfg"], flags={"allow_objects": True})
        return checkpoint_utils._upgrade_state_dict(state)
    except Exception as e:  # a malformed config: fairseq raises anything from KeyError to hydra's
        raise CheckpointError(
            f"{path}: not a fairseq checkpoint: its config does not load "
            f"({type(e).__name__}: {str(e)[:200]})"
        ) from None


def model_name(model_cfg) -> Optional[str]:
    """The model (or arch) name of a model config: omegaconf, dict or legacy ``Namespace``."""
    if model_cfg is None:
        return None
    if isinstance(model_cfg, argparse.Namespace):
        return getattr(model_cfg, "_name", None) or getattr(model_cfg, "arch", None)
    return model_cfg.get("_name") or model_cfg.get("arch")


def check_model_config(model_cfg, expected_models: Sequence[type], source: str = "model config",
                       hint: str = "") -> None:
    """Refuses, before anything is built from ``model_cfg``, a model (or arch) not registered to
    one of ``expected_models`` (fairseq models eval() options; see ``EVALUATED_OPTIONS``) and
    options that are not literals: :class:`CheckpointError` ``"{source}: ..."``. Tasks call it in
    ``build_model``, which fairseq-generate reaches with any checkpoint's config."""
    name = model_name(model_cfg)
    cls = ARCH_MODEL_REGISTRY.get(name, MODEL_REGISTRY.get(name))
    if cls is None or not any(cls is m for m in expected_models):
        wanted = " or ".join(
            next((k for k, v in MODEL_REGISTRY.items() if v is m), m.__name__) for m in expected_models
        )
        raise CheckpointError(
            f"{source}: not a {wanted} checkpoint (model {name!r})" + (f"; {hint}" if hint else "")
        )
    check_config_literals(model_cfg, "cfg.model", source)


def load_model(path: str, expected_models: Sequence[type], hint: str = "",
               task_overrides: Optional[Dict[str, Any]] = None):
    """``(model, cfg, task)`` of checkpoint ``path`` built by fairseq (its own task and model
    registries), refusing models other than ``expected_models`` before anything is built;
    ``task_overrides`` replace task config values (e.g. ``data``, when the data moved)."""
    state = load_fairseq_checkpoint(path)
    check_model_config(state["cfg"].model, expected_models, path, hint)
    with open_dict(state["cfg"]):
        state["cfg"].task.update(task_overrides or {})
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([path], state=state)
    return models[0], cfg, task
