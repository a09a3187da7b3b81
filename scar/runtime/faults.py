"""Fault injection for real: SIGKILL a shard's process, and the punisher (docs/design.md §11).

:func:`sigkill` kills a process and waits until it is gone (no such pid, or a zombie waiting
for its parent, the raylet, to reap it). A shard on another machine of a cluster is killed by
a zero-CPU Ray task pinned to that machine. :class:`Punisher` kills random shards at
exponential intervals of mean ``mtbf`` seconds from a thread (as torchft's punisher does), for
a soak run; it never strikes while the coordinator writes a checkpoint (``lock``): the
cross-shard save is not a transaction (docs/design.md §11).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import ray


def process_gone(pid: int) -> bool:
    """Whether ``pid`` no longer runs (absent, or a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        # Reaped between the signal check and the read: the open succeeds, the read says ESRCH.
        return True


def sigkill(pid: int, timeout: float = 10.0) -> None:
    """SIGKILL ``pid`` (on this machine) and wait until it is gone; a TimeoutError otherwise."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while not process_gone(pid):
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {pid} still runs {timeout} s after SIGKILL")
        time.sleep(0.005)


@ray.remote(num_cpus=0)
def _sigkill_there(pid: int) -> bool:
    sigkill(pid)
    return process_gone(pid)


def sigkill_on_node(pid: int, node_id: str) -> None:
    """SIGKILL ``pid`` on the Ray node ``node_id`` (this machine's: directly), checked gone."""
    if node_id == ray.get_runtime_context().get_node_id():
        sigkill(pid)
        return
    strategy = ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(node_id, soft=False)
    if not ray.get(_sigkill_there.options(scheduling_strategy=strategy).remote(pid)):
        raise RuntimeError(f"process {pid} on node {node_id} survived SIGKILL")


class Punisher:
    """Kills a random shard every ``Exp(mtbf)`` seconds while running.

    ``kill(node)`` kills the shard of ``node``; ``lock`` is held by the coordinator while it
    writes a checkpoint. ``kills`` lists ``(time, node)`` of every kill.
    """

    def __init__(self, kill: Callable[[int], None], n_nodes: int, mtbf: float, lock: threading.Lock, seed: int = 0) -> None:
        if mtbf <= 0:
            raise ValueError(f"mtbf must be positive seconds, got {mtbf}")
        self._kill, self.n_nodes, self.mtbf, self._lock = kill, int(n_nodes), float(mtbf), lock
        self._rng = np.random.default_rng(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scar-punisher", daemon=True)
        self.kills: list[tuple[float, int]] = []

    def __enter__(self) -> Punisher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(float(self._rng.exponential(self.mtbf))):
            node = int(self._rng.integers(self.n_nodes))
            with self._lock:
                if self._stop.is_set():
                    return
                self._kill(node)
            self.kills.append((time.time(), node))
