"""The live runtime's cost curve against model size, before a cluster is used (a script, not a test).

Logistic regression on a synthetic stand-in of Criteo's shape (13 numeric + 26 hashed
categorical fields; labelled synthetic, scar.datasets.criteo), in data-parallel mode
(``--workers`` workers, ``--nodes`` shards), at each model size of ``--sizes`` weights: the
iteration time (median of ``--iters``), the time of a full checkpoint and of a priority one
(r = 1/4) across the shards' directories, and the recovery of one killed shard: partial (it alone
reloads) and traditional (every shard and the worker state roll back), restore alone and with
Ray's detection and restart. Writes the table (CSV) and its figure.

Usage::

    python benchmarks/bench_runtime_scale.py [--sizes 1e5 1e6 1e7] [--samples 100000] \\
        [--out docs/figures/runtime_scale.csv] [--figure docs/figures/runtime_scale.png]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import pandas as pd
import ray

from scar.checkpoint.strategy import get_strategy
from scar.datasets.criteo import N_NUMERIC, criteo_standin
from scar.models.sparse_logistic import SparseLogisticRegression
from scar.report.figures import plot_runtime_scale
from scar.runtime.engine import LiveEngine
from scar.stages.files import write_csv


def measure(weights: int, args, home: str) -> dict:
    model = SparseLogisticRegression()
    data = model.prepare(criteo_standin(args.samples, weights - N_NUMERIC, seed=0))
    x0 = model.init_state(data, 0)
    eng = LiveEngine(
        model, data, 0, x0, n_nodes=args.nodes, home=f"{home}/{weights}", mode="data_parallel",
        n_workers=args.workers, worker_cpus=0,
    )  # fmt: skip
    try:
        eng.load(x0, 0)
        times = []
        for _ in range(args.iters):
            t = time.perf_counter()
            eng.step()
            times.append(time.perf_counter() - t)
        scar = get_strategy("scar").with_r(0.25)
        t = time.perf_counter()
        eng.begin(scar, scar.policy(4), "scar")  # a full save of every shard
        full_save = time.perf_counter() - t
        eng.step()  # r * C = 1: a priority save after every iteration (the first compiles the norms)
        eng.save_seconds = 0.0
        eng.step()
        priority_save = eng.save_seconds
        t = time.perf_counter()
        eng.kill_nodes((1,))
        partial = eng.recover(since=t)
        trad = get_strategy("traditional")
        eng.begin(trad, trad.policy(4), "traditional")
        eng.step()
        t = time.perf_counter()
        eng.kill_nodes((1,))
        full = eng.recover(since=t)
    finally:
        eng.close()
    return {
        "weights": weights,
        "examples": args.samples,
        "nodes": args.nodes,
        "workers": args.workers,
        "iteration_s": statistics.median(times),
        "full_save_s": full_save,
        "priority_save_s": priority_save,
        "partial_restore_s": partial.restore_s,
        "partial_recovery_s": partial.total_s,
        "full_restore_s": full.restore_s,
        "full_recovery_s": full.total_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=float, nargs="+", default=[1e5, 1e6, 1e7])
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--out", default="docs/figures/runtime_scale.csv")
    ap.add_argument("--figure", default="docs/figures/runtime_scale.png")
    args = ap.parse_args()
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    home = tempfile.mkdtemp(prefix="bench-scale-")
    rows = []
    for size in args.sizes:
        rows.append(measure(int(size), args, home))
        print({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in rows[-1].items()}, flush=True)
    ray.shutdown()
    table = pd.DataFrame(rows)
    write_csv(table, args.out)
    plot_runtime_scale(table, args.figure)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4f}"))


if __name__ == "__main__":
    main()
