"""Why `full_partial` beats every fractional policy on ALS in the default run: measure it.

A fractional policy's image holds rows saved at different sweeps; in the default run (C = 8,
ALS converging in 13 sweeps) `full_partial`'s image is the initial factors for every failure
before sweep 9. This script fails a fraction of the 8 server nodes at each sweep T and
restores the lost item rows (``V``; ``U`` is solved from ``V`` first, so its lost rows are left
as they are) from one past iterate ``a`` of the baseline: the initial factors (a = 0), an early
sweep, or a recent one, and prints the rework of each. Restoring the initial, small factors
costs little; restoring a full-size row of an early sweep, which lies on the trajectory behind
the current one, costs more than either. Then it prints, for the failures of a default-run
trial plan, the rework of `scar`, `full_partial` and `sensitive_partial` next to a policy that
saves nothing before sweep C (a ceiling of what a policy that knew when not to save could do;
it is not one of our strategies). The restore cost `sensitive_priority` ranks rows by is printed
next to each rework: it calls an early sweep's rows cheaper to restore than the initial ones
where the rework says the opposite.

Run: ``PYTHONPATH=. .venv/bin/python experiments/als_early_saves.py [movielens|jester] [--figure f.png]``
(about a minute).
"""

from __future__ import annotations

import argparse

import numpy as np

from scar.checkpoint.checkpointer import Checkpointer
from scar.checkpoint.policies import SensitivePriorityCheckpoint
from scar.checkpoint.strategy import get_strategy
from scar.core.blocks import BlockLayout, assign_blocks
from scar.core.failures import Failure, sample_failed_nodes
from scar.datasets import load_dataset
from scar.measure.engine import InProcessEngine
from scar.measure.rework import RunLimits, measure_rework
from scar.measure.trajectory import run_baseline
from scar.measure.trials import TrialSettings, plan_trials, run_trial, trial_failure
from scar.models import make_model


class _NoSavesBeforeC(SensitivePriorityCheckpoint):
    """sensitive_priority that saves nothing before sweep C: the ceiling the script reports."""

    def select(self, k, layout, current, saved):
        mask = super().select(k, layout, current, saved)
        return mask if k >= self.interval else np.zeros_like(mask)


SOURCES = ("0", "1", "2", "T-2", "T-1")  # the sweep a the lost rows are restored from


def restore_from_iterates(model, data, base, n_nodes: int = 8, fraction: float = 0.5) -> dict[str, np.ndarray]:
    """Prints, and returns, the rework and the price of each (T, a): arrays over T = 3 .. K_base - 1."""
    layout = BlockLayout.from_arrays(base.server_state_at(0))
    node_of_block = assign_blocks(layout.n_blocks, n_nodes, "round_robin", 0)
    engine = InProcessEngine(model, data, base.seed)
    limits = RunLimits(cap=3 * base.k_base)
    cost = model.restore_cost(data)
    print(f"Rework (sweeps) when {fraction:g} of {n_nodes} nodes fail at sweep T and the lost V rows are restored from sweep a;")
    print("in brackets the restore cost sensitive_priority prices them at (the shift of the next user solves, all lost rows):")
    print("    T " + "".join(f"{'a=' + a:>16}" for a in SOURCES))
    out: dict[str, list[float]] = {"T": []}
    for T in range(3, base.k_base):
        out["T"].append(T)
        failure = Failure(T, sample_failed_nodes(n_nodes, fraction, np.random.default_rng(T)))
        lost = layout.row_masks(failure.lost_blocks(node_of_block))
        cells = []
        for label, a in zip(SOURCES, (0, 1, 2, T - 2, T - 1)):
            engine.load(base.state_at(T), T)
            engine.write_server_rows(base.server_state_at(a), {"V": lost["V"]})
            price = float(np.sqrt(np.square(cost(base.server_state_at(T), base.server_state_at(a))["V"][lost["V"]]).sum()))
            rework = measure_rework(engine, base, limits).rework_fractional
            out.setdefault(f"rework a={label}", []).append(rework)
            out.setdefault(f"price a={label}", []).append(price)
            cells.append(f"{rework:7.2f} ({price:5.2f})")
        print(f"  {T:3d} " + "".join(f"{c:>16}" for c in cells))
    return {k: np.asarray(v) for k, v in out.items()}


def draw(table: dict[str, np.ndarray], name: str, path: str) -> None:
    """Rework and price against the failure sweep, one line per sweep restored from."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    for label in ("0", "2", "T-2", "T-1"):
        text = "initial factors (a = 0)" if label == "0" else f"sweep a = {label}"
        left.plot(table["T"], table[f"rework a={label}"], marker="o", label=text)
        right.plot(table["T"], table[f"price a={label}"], marker="o", label=text)
    left.set(xlabel="failure at sweep T", ylabel="rework (sweeps)", title="what a restore of the lost V rows costs")
    right.set(
        xlabel="failure at sweep T", ylabel="price (shift of the next user solves)", title="what sensitive_priority prices it at"
    )
    left.legend(fontsize=8)
    fig.suptitle(f"ALS on {name}: half the nodes lost, lost item rows restored from sweep a")
    fig.savefig(path, dpi=120)
    print(f"figure: {path}")


def policies_on_the_default_plan(model, data, base, key: str, n_trials: int = 8) -> None:
    names = ("scar", "full_partial", "sensitive_partial")
    settings = TrialSettings(strategies=tuple(get_strategy(s).with_r(0.25) for s in names))
    specs = plan_trials(n_trials, [0.125, 0.25, 0.5], (0.1, 0.9), 0, key=key)
    rows = [r for spec in specs for r in run_trial(model, data, base, spec, settings)]
    mean = {s: np.mean([r["rework_fractional"] for r in rows if r["strategy"] == s]) for s in names}
    engine = InProcessEngine(model, data, base.seed)
    ceiling = []
    for spec in specs:  # the same sensitive priority with no save before sweep C, recovered as partial
        failure, layout, lost_mask = trial_failure(base, spec, settings)
        T, lost = failure.iteration, layout.row_masks(lost_mask)
        policy = _NoSavesBeforeC(8, 0.25, weights=model.sensitivity(), restore_cost=model.restore_cost(data))
        checkpointer = Checkpointer(policy)
        checkpointer.advance_to(T, base.server_state_at)
        engine.load(base.state_at(T), T)
        engine.write_server_rows(checkpointer.image.values, lost)
        engine.resync(lost)
        ceiling.append(measure_rework(engine, base, settings.limits(base)).rework_fractional)
    print(f"\n{key}, {len(specs)} failures of the default plan (C = 8, r = 1/4, 8 nodes), mean rework in sweeps:")
    for s, m in mean.items():
        print(f"  {s:<30}{m:6.3f}")
    print(f"  {'no saves before C (ceiling)':<30}{np.mean(ceiling):6.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataset", nargs="?", default="movielens", choices=["movielens", "jester"])
    ap.add_argument("--figure", default=None, help="also draw rework and price against the failure sweep here (PNG)")
    args = ap.parse_args()
    name = args.dataset
    options = {"n_users": 2000} if name == "jester" else {}
    model = make_model("mf", {"rank": 10, "l2": 0.05})
    data = model.prepare(load_dataset(name, "embedded", **options))
    base = run_baseline(model, data, seed=0, max_iters=60, tol=0.001 if name == "jester" else 0.01)
    print(f"MF (ALS) on {name}: K_base = {base.k_base} sweeps")
    table = restore_from_iterates(model, data, base)
    if args.figure:
        draw(table, name, args.figure)
    policies_on_the_default_plan(model, data, base, f"mf/{name}")


if __name__ == "__main__":
    main()
