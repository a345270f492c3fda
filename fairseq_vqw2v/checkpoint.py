"""Loading fairseq checkpoints under torch's safe (``weights_only``) unpickler.

torch >= 2.6 refuses legacy fairseq checkpoints because they pickle an ``argparse.Namespace``
(and sometimes omegaconf containers). Rather than switching the safety off, we allow-list exactly
the classes fairseq checkpoints are known to hold, and only while loading one.
"""

import argparse
import collections
import contextlib
from typing import Any, Dict

import torch

from fairseq import checkpoint_utils


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


def load_fairseq_checkpoint(path: str) -> Dict[str, Any]:
    """Loads any fairseq checkpoint (dataclass ``cfg`` or legacy ``args``) to CPU, safely.

    Returns fairseq's upgraded state dict: ``model``, ``cfg`` (an omegaconf config, converted from
    ``args`` for legacy checkpoints) and training state.
    """
    with fairseq_safe_globals():
        return checkpoint_utils.load_checkpoint_to_cpu(path)
