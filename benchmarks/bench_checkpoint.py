"""How close the checkpoint path runs to memory and disk speed (a script, not a timed test).

On a float32 model of ``--mib`` MiB (default 256: 65,536 rows x 1,024), prints medians of
``--runs`` runs, side by side:

(a) one priority save (r = 1/4: select by change norm, copy into the image) in memory, against a
    memcpy of the model (``np.copyto`` into a preallocated array); ratio = memcpy / save
    (target >= 0.5). Also the change norms alone. With threads 1 and, where the machine has
    more cores, ``--threads``.
(b) a full save to a :class:`~scar.checkpoint.stores.DirectoryStore` against ``np.save`` +
    fsync of the same array in the same directory; ratio = np.save / full save (target >= 0.5).
    Also a partial (priority r = 1/4) save to the directory, and a read of the store against
    ``np.load``.

Usage::

    python benchmarks/bench_checkpoint.py [--mib 256] [--runs 5] [--dir DIR] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from scar.checkpoint.checkpointer import Checkpointer
from scar.checkpoint.policies import PriorityCheckpoint
from scar.checkpoint.stores import DirectoryStore, InMemoryStore
from scar.core.blocks import BlockLayout, set_num_threads


def _median_s(fn: Callable[[], object], runs: int, before: Callable[[], object] | None = None) -> float:
    times = []
    for _ in range(runs):
        if before is not None:
            before()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _row(name: str, t: float, base_name: str, base: float) -> None:
    print(f"  {name:<44s} {t * 1e3:9.1f} ms   {base_name:<22s} {base * 1e3:9.1f} ms   ratio {base / t:5.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=float, default=256.0, help="model size in MiB (float32, rows of --width)")
    ap.add_argument("--width", type=int, default=1024, help="parameters per row (block)")
    ap.add_argument("--runs", type=int, default=5, help="runs per measurement (the median is printed)")
    ap.add_argument("--dir", default=None, help="directory for the on-disk runs (default: a temp dir)")
    ap.add_argument("--threads", type=int, default=min(2, len(os.sched_getaffinity(0))), help="threads of the threaded run")
    args = ap.parse_args()

    rows = max(4, int(args.mib * 2**20) // (4 * args.width))
    rng = np.random.default_rng(0)
    params = {"w": rng.standard_normal((rows, args.width), dtype=np.float32)}
    w = params["w"]
    print(f"model: {rows:,} rows x {args.width:,} float32 = {w.nbytes / 2**20:.0f} MiB; medians of {args.runs} runs")

    def move() -> None:
        # A new iteration: a random quarter of the rows moves (not timed).
        idx = rng.choice(rows, rows // 4, replace=False)
        w[idx] += np.float32(1e-3) * rng.integers(1, 5)

    dst = np.empty_like(w)
    np.copyto(dst, w)  # touch the pages once
    memcpy = _median_s(lambda: np.copyto(dst, w), args.runs)

    print("(a) in memory")
    thread_counts = sorted({1, max(1, args.threads)})
    layout = BlockLayout.from_arrays(params)
    for threads in thread_counts:
        set_num_threads(threads)
        ckpt = Checkpointer(PriorityCheckpoint(interval=4, fraction=0.25), InMemoryStore())  # a save every iteration
        ckpt.start(params)
        k = iter(range(1, 10**9))
        ckpt.after_iteration(next(k), params)  # warm up (compiles the kernels once)
        save = _median_s(lambda c=ckpt, it=k: c.after_iteration(next(it), params), args.runs, before=move)
        norms = _median_s(lambda c=ckpt: layout.block_distances(params, c.image.values), args.runs)
        _row(f"priority save r=1/4, {threads} thread(s)", save, "memcpy (np.copyto)", memcpy)
        _row(f"  change norms alone, {threads} thread(s)", norms, "memcpy (np.copyto)", memcpy)
    set_num_threads(1)

    root = Path(tempfile.mkdtemp(prefix="bench-ckpt-", dir=args.dir))
    try:
        print(f"(b) on disk ({root})")
        npy = root / "model.npy"

        def np_save() -> None:
            with open(npy, "wb") as fh:
                np.save(fh, w)
                fh.flush()
                os.fsync(fh.fileno())

        base_save = _median_s(np_save, args.runs)
        store = DirectoryStore(root / "store")
        it = iter(range(10**9))
        store.write(next(it), params)  # warm up
        full = _median_s(lambda: store.write(next(it), params), args.runs)
        _row("full save to DirectoryStore", full, "np.save + fsync", base_save)

        ckpt = Checkpointer(PriorityCheckpoint(interval=4, fraction=0.25), DirectoryStore(root / "partial"))
        ckpt.start(params)
        k = iter(range(1, 10**9))
        ckpt.after_iteration(next(k), params)
        partial = _median_s(lambda: ckpt.after_iteration(next(k), params), args.runs, before=move)
        _row("partial save r=1/4 (priority) to DirectoryStore", partial, "np.save + fsync", base_save)

        one = DirectoryStore(root / "read")
        one.write(0, params)
        one.write(1, params, rows={"w": np.arange(0, rows, 4)})
        base_read = _median_s(lambda: np.load(npy), args.runs)
        read = _median_s(one.read, args.runs)
        _row("read (full + one r=1/4 record)", read, "np.load", base_read)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
