"""The live runtime against the in-process engine, MLR on MNIST (a script, not a timed test).

Prints medians, side by side: iterations per second in process, live in reproduction mode
(one worker pulling and pushing every row) and live in data-parallel mode (``--workers``
workers on partitions); then recovery seconds of one killed shard of ``--nodes``: partial
(only it reloads its rows) against traditional (every shard and the worker state roll back),
split into detection + restart (Ray's) and the restore (SCAR's), over ``--kills`` kills each.

Usage::

    python benchmarks/bench_runtime.py [--samples 5000] [--iters 10] [--nodes 4] [--workers 2] [--kills 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import ray
from threadpoolctl import threadpool_limits

from scar.checkpoint.strategy import get_strategy
from scar.datasets import load_dataset
from scar.measure.engine import InProcessEngine
from scar.models import make_model
from scar.runtime.engine import LiveEngine


def _per_iteration(engine, iters: int) -> float:
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        engine.step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _recoveries(engine: LiveEngine, x0, strategy_name: str, kills: int, node: int) -> list:
    strategy = get_strategy(strategy_name).with_r(0.25)
    out = []
    for i in range(kills):
        engine.load(x0, 0)
        engine.begin(strategy, strategy.policy(4), f"bench-{strategy_name}-{i}")
        for _ in range(6):
            engine.step()
        t = time.perf_counter()
        engine.kill_nodes((node,))
        out.append(engine.recover(since=t))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=5000)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--num-cpus", type=int, default=2)
    args = ap.parse_args()

    model = make_model("mlr", {"learning_rate": 0.1, "batch_size": 100, "l2": 1e-3})
    data = model.prepare(load_dataset("mnist", "embedded", max_samples=args.samples))
    x0 = model.init_state(data, 0)
    print(f"MLR on {data.X.shape[0]} MNIST examples, W {x0['W'].shape}; {args.nodes} shards; medians")

    # One BLAS thread, as Ray gives each actor (OMP_NUM_THREADS=1): the same arithmetic per core.
    inproc = InProcessEngine(model, data, 0)
    inproc.load(x0, 0)
    with threadpool_limits(1):
        t_in = _per_iteration(inproc, args.iters)

    t0 = time.perf_counter()
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    print(f"ray.init: {time.perf_counter() - t0:.1f} s")
    home = tempfile.mkdtemp(prefix="bench-runtime-")
    rep = LiveEngine(model, data, 0, x0, n_nodes=args.nodes, home=f"{home}/rep")
    rep.load(x0, 0)
    t_rep = _per_iteration(rep, args.iters)
    dp = LiveEngine(
        model, data, 0, x0, n_nodes=args.nodes, home=f"{home}/dp", mode="data_parallel", n_workers=args.workers, worker_cpus=0
    )
    dp.load(x0, 0)
    t_dp = _per_iteration(dp, args.iters)
    dp.close()

    print(f"{'engine':<34}{'s/iteration':>12}{'iter/s':>9}{'vs in-process':>15}")
    for name, t in [("in process", t_in), ("live, reproduction", t_rep), (f"live, data-parallel ({args.workers} workers)", t_dp)]:
        print(f"{name:<34}{t:>12.4f}{1 / t:>9.2f}{t_in / t:>14.2f}x")

    rows = {s: _recoveries(rep, x0, s, args.kills, node=1) for s in ("scar", "traditional")}
    rep.close()
    print(f"\nrecovery of 1 of {args.nodes} shards after SIGKILL ({args.kills} kills each), seconds")
    print(f"{'strategy':<28}{'detect+restart':>15}{'restore':>10}{'total':>9}")
    for s, recs in rows.items():
        label = "scar (partial, 1 shard)" if s == "scar" else f"traditional (all {args.nodes} shards)"
        dr = statistics.median(r.detect_s + r.restart_s for r in recs)
        rs = statistics.median(r.restore_s for r in recs)
        tot = statistics.median(r.total_s for r in recs)
        print(f"{label:<28}{dr:>15.3f}{rs:>10.4f}{tot:>9.3f}")
    ray.shutdown()


if __name__ == "__main__":
    main()
