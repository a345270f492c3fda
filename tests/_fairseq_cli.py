"""The one way the tests run fairseq's binaries (served to tests as conftest's ``fairseq_cli``)."""

import os
import subprocess

from _pretraining_util import BIN, USER_DIR


def fairseq_env(threads=1, env=None):
    """A fairseq process's environment: this one's, with ``threads`` torch threads (None: torch's
    own default), fairseq's warnings off and ``env`` added."""
    values = dict(os.environ, PYTHONWARNINGS="ignore", **(env or {}))
    if threads is not None:
        values["OMP_NUM_THREADS"] = str(threads)
    return values


def run_fairseq(tool, *args, plugin=True, cpu=True, threads=1, timeout=600, env=None):
    """Runs fairseq's ``fairseq-{tool}`` binary (train, generate, preprocess, ...) of this
    interpreter's environment with ``--cpu`` unless ``cpu`` is false (a command line that has it
    already), ``--user-dir`` this plugin unless ``plugin`` is false (stock fairseq, or a command
    line that has it already), in :func:`fairseq_env`'s environment. Returns the
    ``CompletedProcess`` (text output captured): a test checks ``returncode`` itself, as some
    expect a failure."""
    cmd = [os.path.join(BIN, f"fairseq-{tool}"), *map(str, args)]
    if cpu:
        cmd.append("--cpu")
    if plugin:
        cmd += ["--user-dir", USER_DIR]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=fairseq_env(threads, env))
