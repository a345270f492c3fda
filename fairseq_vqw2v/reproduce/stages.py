"""Stages of the reproduction: what each runs, when it is complete, and the runner.

A :class:`Stage` owns one folder under the output root and runs a few command lines there. It is
complete when its marker files exist and the hash recorded when it last ran matches its current
hash: the hash covers its command lines (output root written as ``{out}``, so the folder can
move) and the hashes of the stages it reads, so a changed setting reruns the stage and everything
downstream. A stage that starts with a different hash than the one recorded removes its folder
first; one interrupted with the same hash resumes: commands whose ``creates`` file exists are
skipped, and a training command resumes from fairseq's ``checkpoint_last.pt`` (and is skipped
when that checkpoint already has its updates: fairseq-train on a finished checkpoint still takes
one more update). A training command with a :class:`Restart` runs again from scratch with
another seed while its last validation says the training never started; the stage's record
keeps which run it is on, so a resumed stage goes on with that run.
"""

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from fnmatch import fnmatch
from typing import Callable, Dict, List, Optional, Sequence, Tuple

STATE_DIR = ".stages"
LOG_DIR = "logs"
HEARTBEAT_SECONDS = 60.0


@dataclass(frozen=True)
class Restart:
    """When and how a training command runs again from scratch.

    Attributes:
        tries: runs in all, the first included.
        seed_step: run ``k`` (0 for the first) trains with ``--seed`` plus ``k * seed_step``.
        stalled: the last json ``valid`` record of a run -> whether that run never started
            learning (it then runs again, while tries are left).
        why: what ``stalled`` tests, in words (logs and ``commands.sh``).
    """

    tries: int
    seed_step: int
    stalled: Callable[[Dict], bool]
    why: str

    def argv(self, argv: Sequence[str], run: int) -> List[str]:
        """``argv`` with its ``--seed`` value moved on by ``run * seed_step``."""
        argv = list(argv)
        at = argv.index("--seed") + 1
        argv[at] = str(int(argv[at]) + run * self.seed_step)
        return argv

    def seed(self, argv: Sequence[str], run: int) -> str:
        """The ``--seed`` of run ``run``."""
        return self.argv(argv, run)[argv.index("--seed") + 1]

    def describe(self, argv: Sequence[str]) -> str:
        """One line for ``commands.sh``: when the command reruns, and with which seeds."""
        seeds = ", then ".join(self.seed(argv, run) for run in range(1, self.tries))
        return f"# {self.why}: the same again from scratch with --seed {seeds}"


@dataclass
class Command:
    """One command line of a stage.

    Attributes:
        argv: the command as run (``python``/``fairseq-*`` resolve on the runner's PATH).
        creates: a file the command writes last; when it exists (and the stage's hash is the
            recorded one) the command is skipped on resume.
        trains: (checkpoint, updates) of a fairseq-train command: skipped once the checkpoint
            holds that many updates.
        restart: with ``trains``, run again while a run stalls (a stage holds at most one such
            command).
    """

    argv: List[str]
    creates: Optional[str] = None
    trains: Optional[Tuple[str, int]] = None
    restart: Optional[Restart] = None

    def shell(self) -> str:
        return _shell(self.argv)


def _shell(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


@dataclass
class Stage:
    """A named step of the pipeline with its own folder ``workdir``.

    Attributes:
        name: ``group/detail`` (``pretrain/gumbel``); ``group`` sums stage times in the tables.
        commands: run in order.
        markers: files that exist once the stage is complete.
        inputs: names of the stages whose outputs it reads (their hashes enter its hash).
        after: stages that must finish first without being inputs (ordering only).
        settings: anything besides the commands that determines the output.
    """

    name: str
    workdir: str
    commands: List[Command]
    markers: List[str]
    inputs: List[str] = field(default_factory=list)
    after: List[str] = field(default_factory=list)
    settings: Dict = field(default_factory=dict)

    @property
    def group(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def slug(self) -> str:
        return self.name.replace("/", "_")


def stage_hashes(stages: Sequence[Stage], out: str) -> Dict[str, str]:
    """Hash of every stage: its commands and settings, and the hashes of its inputs.

    ``stages`` must be in an order where inputs come first (raises ValueError otherwise).
    """
    hashes: Dict[str, str] = {}
    for stage in stages:
        missing = [i for i in stage.inputs + stage.after if i not in hashes]
        if missing:
            raise ValueError(f"stage {stage.name}: inputs {missing} are not earlier stages")
        root = os.path.abspath(out)
        own = {
            "commands": [[a.replace(root, "{out}") for a in _absolute(_plugin_by_name(c.argv), out)]
                         for c in stage.commands],
            "settings": stage.settings,
            "inputs": {name: hashes[name] for name in stage.inputs},
        }
        restarts = [(c.restart.tries, c.restart.seed_step, c.restart.why)
                    for c in stage.commands if c.restart]
        if restarts:  # absent otherwise, so stages without one keep the hashes they had
            own["restarts"] = restarts
        hashes[stage.name] = hashlib.sha256(
            json.dumps(own, sort_keys=True, default=str).encode()).hexdigest()
    return hashes


def _plugin_by_name(argv: Sequence[str]) -> List[str]:
    """``--user-dir`` hashed by the plugin's folder name: where the package lies, and the folder
    a run starts from (which decides how that path is shown), are no settings of the stage."""
    return [os.path.basename(os.path.normpath(a)) if i and argv[i - 1] == "--user-dir" else a
            for i, a in enumerate(argv)]


def _absolute(argv: Sequence[str], out: str) -> List[str]:
    """Arguments under ``out`` written absolute, so that ``out`` and ``./out`` hash alike."""
    prefix = os.path.normpath(out) + os.sep
    return [os.path.abspath(a) if os.path.normpath(a).startswith(prefix) else a for a in argv]


def trained_updates(checkpoint: str) -> int:
    """Updates recorded in a fairseq checkpoint (0 when it is missing or unreadable)."""
    from ..checkpoint import load_fairseq_checkpoint

    try:
        state = load_fairseq_checkpoint(checkpoint, mmap=True)
        return int(state["optimizer_history"][-1]["num_updates"])
    except (OSError, ValueError, KeyError, IndexError, RuntimeError):
        return 0


def log_records(log_path: str, kind: str) -> List[Dict]:
    """fairseq-train's json records of one kind (``train_inner``, ``valid``) in a stage log."""
    records = []
    try:
        with open(log_path, errors="replace") as f:
            for line in f:
                start = line.find("{")
                if start < 0 or f"| {kind} |" not in line[:start]:
                    continue
                try:
                    records.append(json.loads(line[start:]))
                except ValueError:
                    continue
    except OSError:
        pass
    return records


def select(stages: Sequence[Stage], patterns: Optional[Sequence[str]]) -> List[Stage]:
    """The stages matching any glob of ``patterns`` (``am/*``, ``bert/gumbel``) and all that they
    need, in pipeline order; all stages when ``patterns`` is empty. Raises ValueError for a
    pattern that matches nothing."""
    if not patterns:
        return list(stages)
    by_name = {s.name: s for s in stages}
    wanted = set()
    for pattern in patterns:
        matched = [s.name for s in stages if fnmatch(s.name, pattern) or s.name == pattern]
        if not matched:
            raise ValueError(f"--stages {pattern!r} matches no stage (names: "
                             f"{', '.join(s.name for s in stages)})")
        wanted.update(matched)
    frontier = list(wanted)
    while frontier:
        stage = by_name[frontier.pop()]
        for name in stage.inputs + stage.after:
            if name not in wanted:
                wanted.add(name)
                frontier.append(name)
    return [s for s in stages if s.name in wanted]


def write_commands(path: str, stages: Sequence[Stage], env: Dict[str, str], header: str):
    """``commands.sh``: every stage's commands, as the runner executes them, in pipeline order."""
    lines = ["#!/usr/bin/env bash", f"# {header}", "set -euo pipefail"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    for stage in stages:
        lines.append(f"\n# == {stage.name}")
        for c in stage.commands:
            lines.append(c.shell())
            if c.restart:
                lines.append(c.restart.describe(c.argv))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


class Runner:
    """Runs stages (up to ``jobs`` at once) under ``out``, skipping complete ones.

    Each stage's console output goes to ``out/logs/{slug}.log`` (appended across resumes); the
    console gets a line when a stage starts, a heartbeat every minute and a line with its time
    when it ends. Stage records (hash, elapsed seconds) live in ``out/.stages/{slug}.json``.
    """

    def __init__(self, out: str, stages: Sequence[Stage], env: Dict[str, str], jobs: int = 1,
                 print_fn: Callable[[str], None] = print):
        self.out, self.stages, self.jobs = out, list(stages), max(1, jobs)
        self.env = {**os.environ, **env}
        self.hashes = stage_hashes(self.stages, out)
        self.print = print_fn
        self.ran: List[str] = []
        self.skipped: List[str] = []
        self._lock = threading.Lock()
        self._started: Dict[str, float] = {}

    # -- records
    def record_path(self, stage: Stage) -> str:
        return os.path.join(self.out, STATE_DIR, f"{stage.slug}.json")

    def log_path(self, stage: Stage) -> str:
        return os.path.join(self.out, LOG_DIR, f"{stage.slug}.log")

    def record(self, stage: Stage) -> Dict:
        try:
            with open(self.record_path(stage)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def _write_record(self, stage: Stage, **values):
        path = self.record_path(stage)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "w") as f:
            json.dump({"stage": stage.name, "hash": self.hashes[stage.name], **values}, f, indent=2)
        os.replace(path + ".tmp", path)

    def is_complete(self, stage: Stage) -> bool:
        rec = self.record(stage)
        return (rec.get("hash") == self.hashes[stage.name] and rec.get("complete", False)
                and all(os.path.exists(m) for m in stage.markers))

    def elapsed(self) -> Dict[str, float]:
        """Seconds each complete stage took when it ran (its last run, resumes summed)."""
        return {s.name: self.record(s).get("seconds", 0.0) for s in self.stages if self.is_complete(s)}

    # -- running
    def run(self) -> bool:
        """Runs every incomplete stage once its dependencies are complete; True when all are."""
        done = {s.name for s in self.stages if self.is_complete(s)}
        for stage in self.stages:
            if stage.name in done:
                self.skipped.append(stage.name)
                self._say(stage, f"complete ({self.record(stage).get('seconds', 0):.0f} s when it ran), skipped")
        pending = [s for s in self.stages if s.name not in done]
        failed: List[str] = []
        running = {}
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            while pending or running:
                if not failed:
                    for stage in [s for s in pending if all(d in done for d in s.inputs + s.after)]:
                        if len(running) >= self.jobs:
                            break
                        pending.remove(stage)
                        running[pool.submit(self._run_stage, stage)] = stage
                if not running:
                    break  # what is left waits on a failed stage
                finished, _ = wait(running, timeout=HEARTBEAT_SECONDS, return_when=FIRST_COMPLETED)
                if not finished:
                    self._heartbeat(running.values())
                for future in finished:
                    stage = running.pop(future)
                    if future.result():
                        done.add(stage.name)
                        self.ran.append(stage.name)
                    else:
                        failed.append(stage.name)
        if failed:
            self.print(f"failed: {', '.join(failed)} (see {os.path.join(self.out, LOG_DIR)}/); "
                       f"not run: {', '.join(s.name for s in pending) or 'none'}")
        return not failed and not pending

    def _say(self, stage: Stage, text: str):
        index = self.stages.index(stage) + 1
        with self._lock:
            self.print(f"[{index:>3}/{len(self.stages)}] {stage.name}: {text}")

    def _heartbeat(self, stages):
        now = time.time()
        for stage in stages:
            last = _last_line(self.log_path(stage))
            self._say(stage, f"running {now - self._started.get(stage.name, now):.0f} s" + (f" | {last}" if last else ""))

    def _run_stage(self, stage: Stage) -> bool:
        rec = self.record(stage)
        if rec.get("hash") != self.hashes[stage.name] and os.path.isdir(stage.workdir):
            # other settings than those that wrote the folder: nothing in it can be reused
            shutil.rmtree(stage.workdir)
            rec = {}
        os.makedirs(stage.workdir, exist_ok=True)
        previous = rec.get("seconds", 0.0)
        run = rec.get("run", 0)  # the run of the stage's restartable command it is on
        self._write_record(stage, complete=False, seconds=previous, run=run)
        self._started[stage.name] = start = time.time()
        self._say(stage, "resuming" if previous else "started")
        os.makedirs(os.path.dirname(self.log_path(stage)), exist_ok=True)
        with open(self.log_path(stage), "a") as log:
            for command in stage.commands:
                if command.creates and os.path.exists(command.creates):
                    continue
                while True:
                    restart = command.restart
                    argv = restart.argv(command.argv, run) if restart else command.argv
                    trained = (command.trains is not None
                               and trained_updates(command.trains[0]) >= command.trains[1])
                    code = 0 if trained else self._call(argv, log)
                    if code != 0:
                        seconds = previous + time.time() - start
                        self._write_record(stage, complete=False, seconds=seconds, run=run)
                        self._say(stage, f"FAILED (exit {code}) after {seconds:.0f} s: "
                                         f"{_last_line(self.log_path(stage))} "
                                         f"(log {self.log_path(stage)})")
                        return False
                    if not self._stalled(command, run, stage):
                        break
                    run += 1
                    self._say(stage, f"{restart.why}: training again from scratch with --seed "
                                     f"{restart.seed(command.argv, run)} (run {run + 1} of "
                                     f"{restart.tries})")
                    _remove_checkpoints(os.path.dirname(command.trains[0]))
                    self._write_record(stage, complete=False,
                                       seconds=previous + time.time() - start, run=run)
        missing = [m for m in stage.markers if not os.path.exists(m)]
        seconds = previous + time.time() - start
        if missing:
            self._write_record(stage, complete=False, seconds=seconds, run=run)
            self._say(stage, f"FAILED: its commands ended without writing {', '.join(missing)}")
            return False
        self._write_record(stage, complete=True, seconds=seconds, run=run)
        last = _last_line(self.log_path(stage))
        self._say(stage, f"done in {seconds:.0f} s" + (f" | {last}" if last else ""))
        return True

    def _call(self, argv: Sequence[str], log) -> int:
        log.write(f"$ {_shell(argv)}\n")
        log.flush()
        return subprocess.call(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                               stdin=subprocess.DEVNULL)

    def _stalled(self, command: Command, run: int, stage: Stage) -> bool:
        """Whether ``command``'s run ``run`` stalled and a run is left: judged on the last
        validation in the stage's log, which is this run's (the log is only appended to)."""
        if command.restart is None or run + 1 >= command.restart.tries:
            return False
        valid = log_records(self.log_path(stage), "valid")
        return bool(valid) and command.restart.stalled(valid[-1])

    def restarted(self) -> Dict[str, Tuple[int, str]]:
        """Complete stages whose restartable command ran again: stage -> (the run kept, counted
        from 1, and its ``--seed``)."""
        kept = {}
        for stage in self.stages:
            run = self.record(stage).get("run", 0)
            command = next((c for c in stage.commands if c.restart), None)
            if run and command and self.is_complete(stage):
                kept[stage.name] = (run + 1, command.restart.seed(command.argv, run))
        return kept


def _remove_checkpoints(save_dir: str):
    """A stalled training's checkpoints, so that the next run starts from scratch."""
    for name in os.listdir(save_dir):
        if name.startswith("checkpoint") and name.endswith(".pt"):
            os.remove(os.path.join(save_dir, name))


def _last_line(path: str, limit: int = 160) -> str:
    """The last non-empty line of a log (tqdm's carriage returns split lines), shortened."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 4096))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.replace("\r", "\n").split("\n") if line.strip()]
    if not lines:
        return ""
    line = lines[-1]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def tool_path_env() -> Dict[str, str]:
    """PATH with this interpreter's folder first, so ``python`` and ``fairseq-*`` are its own."""
    return {"PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
