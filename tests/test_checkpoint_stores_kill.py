"""A real crash test of scar.checkpoint.stores.DirectoryStore: SIGKILL a writer in the middle of a save.

A child process writes full saves of one large array in a loop (save ``k`` holds the value
``k`` everywhere, at iteration ``k``). The parent waits until a record's temp file is on disk,
i.e. a write is in flight, and kills the child's whole process group with SIGKILL: no Python
cleanup runs, so ``atomic_write`` cannot remove its temp file. A fresh store on the directory
must leave the leftover temp file alone (readers never delete: it may be a live writer's), and
read back exactly the newest complete record, never a mix of two saves.
"""

from __future__ import annotations

import json
import os
import select
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from scar._atomic import TMP_PREFIX
from scar.checkpoint.stores import DirectoryStore

REPO = Path(__file__).resolve().parents[1]

# 1500 x 1500 float64 = 18 MB a save: about 50 ms a write here, most of it with the temp file
# on disk, so a kill lands mid-write; small enough that the whole file runs in a few seconds.
N_ROWS = N_COLS = 1500
READY_TIMEOUT_S = 30.0  # child start-up (imports) plus the first full save
SIGHTING_TIMEOUT_S = 30.0  # per test case, from "ready" to the kill
EXIT_TIMEOUT_S = 10.0
POLL_S = 0.0005
# If a kill happens to land just after a rename (no temp file left), try again, at most this often.
MAX_ATTEMPTS = 4

CHILD = textwrap.dedent(
    f"""
    import sys
    import numpy as np
    from scar.checkpoint.stores import DirectoryStore

    store = DirectoryStore(sys.argv[1])
    store.write(0, {{"w": np.zeros(({N_ROWS}, {N_COLS}))}})
    print("ready", flush=True)
    k = 1
    while True:
        store.write(k, {{"w": np.full(({N_ROWS}, {N_COLS}), float(k))}})
        k += 1
    """
)

# Record framing of scar.checkpoint.stores (MAGIC | header length u64 LE | sha256(header) | header JSON | payload),
# parsed here independently of the store's reader.
_PREFIX = struct.Struct("<8sQ32s")


def _record_header(path: Path) -> dict:
    with open(path, "rb") as fh:
        magic, header_len, _ = _PREFIX.unpack(fh.read(_PREFIX.size))
        assert magic == b"SCARREC2", f"{path.name} is not a checkpoint record"
        return json.loads(fh.read(header_len).decode("utf-8"))


def _temp_files(path: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(path) if e.name.startswith(TMP_PREFIX))


def _records(path: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(path) if e.name.startswith("ckpt-") and e.name.endswith(".rec"))


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # start_new_session: the group id is the child's pid
        except ProcessLookupError:
            pass
    proc.wait(timeout=EXIT_TIMEOUT_S)


def _child_failure(proc: subprocess.Popen, stderr_path: Path, what: str) -> str:
    err = stderr_path.read_text(errors="replace")[-3000:] if stderr_path.exists() else ""
    return f"{what} (child exit code {proc.poll()}); child stderr:\n{err}"


def _kill_mid_write(ckpt: Path, stderr_path: Path, sightings: int) -> tuple[int, float]:
    """Run the writer in ``ckpt`` and SIGKILL it while its ``sightings``-th observed save is in flight.

    Returns the number of distinct temp files seen and the seconds from "ready" to the kill.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(ckpt)],
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,
            env=env,
            cwd=REPO,
        )
    try:
        # Wait for "ready", bounded: select on the pipe, then read the one line.
        deadline = time.monotonic() + READY_TIMEOUT_S
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(_child_failure(proc, stderr_path, f"child not ready within {READY_TIMEOUT_S:.0f} s"))
            readable, _, _ = select.select([proc.stdout], [], [], min(left, 0.1))
            if readable:
                chunk = os.read(proc.stdout.fileno(), 64)
                if not chunk:
                    pytest.fail(_child_failure(proc, stderr_path, "child closed stdout before printing 'ready'"))
                line += chunk
        assert line.strip() == b"ready", f"unexpected child output {line!r}"

        # Poll until the `sightings`-th distinct temp file is on disk, then kill at once.
        t_ready = time.monotonic()
        deadline = t_ready + SIGHTING_TIMEOUT_S
        seen: set[str] = set()
        while True:
            names = [e.name for e in os.scandir(ckpt) if e.name.startswith(TMP_PREFIX)]
            if names:
                seen.update(names)
                if len(seen) >= sightings:
                    os.killpg(proc.pid, signal.SIGKILL)
                    break
            if proc.poll() is not None:
                pytest.fail(_child_failure(proc, stderr_path, "child exited on its own"))
            if time.monotonic() > deadline:
                pytest.fail(
                    _child_failure(
                        proc,
                        stderr_path,
                        f"saw only {len(seen)} of {sightings} temp files within {SIGHTING_TIMEOUT_S:.0f} s",
                    )
                )
            time.sleep(POLL_S)
        t_kill = time.monotonic() - t_ready
        try:
            rc = proc.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"child still alive {EXIT_TIMEOUT_S:.0f} s after SIGKILL")
        assert rc == -signal.SIGKILL, _child_failure(proc, stderr_path, f"child exit code {rc}, expected SIGKILL")
        return len(seen), t_kill
    finally:
        _kill_group(proc)
        proc.stdout.close()


@pytest.mark.parametrize("sightings", [1, 3, 6])
def test_sigkill_mid_write_leaves_consistent_checkpoint(tmp_path: Path, sightings: int) -> None:
    for attempt in range(1, MAX_ATTEMPTS + 1):
        ckpt = tmp_path / f"ckpt-{attempt}"
        n_seen, _ = _kill_mid_write(ckpt, tmp_path / f"stderr-{attempt}.txt", sightings)

        # The state the crash left, before any store touches it.
        leftovers = _temp_files(ckpt)
        records = _records(ckpt)
        assert records, "no complete record after the kill (the first full save was done before 'ready')"
        newest = _record_header(ckpt / records[-1])
        k = newest["iteration"]
        assert newest["kind"] == "full"
        assert newest["seq"] == k  # one full save per iteration, from seq 0 = iteration 0
        # Saves 1 .. sightings were started, so saves 0 .. sightings - 1 completed.
        assert k >= sightings - 1, f"newest record is iteration {k}, but {n_seen} saves were seen in flight"
        # Older records are deleted after a full save; a kill between rename and compaction
        # can leave the previous one too, never more.
        assert len(records) <= 2, records

        # Documented: readers ignore stray temp files (they may belong to a live writer) ...
        store = DirectoryStore(ckpt)
        assert _temp_files(ckpt) == leftovers, "opening the store must not touch temp files"
        ck = store.read()
        assert set(ck.values) == {"w"}
        w = ck.values["w"]
        assert w.shape == (N_ROWS, N_COLS) and w.dtype == np.float64
        assert np.all(w == float(k)), f"checkpoint mixes saves: values {np.unique(w)[:5]}, expected all {k}"
        np.testing.assert_array_equal(ck.saved_at["w"], np.full(N_ROWS, k, dtype=np.int64))

        if not leftovers:
            continue  # the kill landed just after a rename: consistent, but not a torn write; retry

        # ... reading again gives the same image and still leaves them ...
        again = store.read()
        assert _temp_files(ckpt) == leftovers, "read() must not touch temp files"
        assert np.all(again.values["w"] == float(k))
        np.testing.assert_array_equal(again.saved_at["w"], np.full(N_ROWS, k, dtype=np.int64))
        # ... and the next writer removes them, continuing the sequence after the crash.
        store.write(k + 1, {"w": np.full((N_ROWS, N_COLS), float(k + 1))})
        assert np.all(DirectoryStore(ckpt).read().values["w"] == float(k + 1))
        assert _temp_files(ckpt) == []
        return
    pytest.fail(f"in {MAX_ATTEMPTS} attempts no kill left a temp file behind (every kill landed after a rename)")
