"""Which ALS state can a failure hurt? Measure it.

ALS solves U from V, then V from U. A perturbation of U between sweeps is erased by the next
sweep (it is recomputed from V alone), so a failure can hurt only through V. This script
takes the default MF experiment (MovieLens 100k, rank 10), fails a fraction of the server nodes
at sampled iterations, and restores, from the SCAR checkpoint (priority, r = 1/4, C = 8),
(a) only the lost rows of U (the lost V rows keep their current values), (b) only the lost rows
of V, (c) both (what SCAR does). It prints the mean rework of each, and the share of SCAR's
checkpoint budget spent on U rows.

Run: ``.venv/bin/python experiments/als_which_factor.py`` (about a minute).
"""

from __future__ import annotations

import numpy as np

from scar.checkpoint.checkpointer import Checkpointer
from scar.checkpoint.policies import make_checkpoint_policy
from scar.core.blocks import BlockLayout, assign_blocks
from scar.core.failures import Failure, sample_failed_nodes
from scar.datasets import load_dataset
from scar.measure.engine import InProcessEngine
from scar.measure.rework import RunLimits, measure_rework
from scar.measure.trajectory import run_baseline
from scar.measure.trials import failure_iteration, plan_trials
from scar.models import make_model


def main(n_trials: int = 20, fraction: float = 0.25, interval: int = 8, r: float = 0.25) -> None:
    model = make_model("mf", {"rank": 10, "l2": 0.05})
    data = model.prepare(load_dataset("movielens"))
    base = run_baseline(model, data, seed=0, max_iters=60, tol=0.01)
    layout = BlockLayout.from_arrays(base.server_state_at(0))
    node_of_block = assign_blocks(layout.n_blocks, 8, "round_robin", 0)
    engine = InProcessEngine(model, data, base.seed)
    limits = RunLimits(cap=3 * base.k_base)
    rework = {"U only": [], "V only": [], "U and V": []}
    saved_rows = {"U": 0, "V": 0}
    for spec in plan_trials(n_trials, [fraction], (0.1, 0.9), 0, key="mf/movielens"):
        T = failure_iteration(spec.position, base.k_base)
        checkpointer = Checkpointer(make_checkpoint_policy("priority", interval, r, seed=0))
        for k in range(1, T):
            checkpointer.advance_to(k + 1, base.server_state_at)  # the replay, one save at a time
            for name in ("U", "V"):  # rows this iteration's save (if any) chose
                saved_rows[name] += int((checkpointer.image.saved_at[name] == k).sum())
        image = checkpointer.image
        failure = Failure(T, sample_failed_nodes(8, fraction, np.random.default_rng(spec.seed)))
        lost = layout.row_masks(failure.lost_blocks(node_of_block))
        for case, factors in (("U only", ("U",)), ("V only", ("V",)), ("U and V", ("U", "V"))):
            # The lost rows of the factors not restored keep their values at T.
            engine.load(base.state_at(T), T)
            engine.write_server_rows(image.values, {name: lost[name] for name in factors})
            engine.resync({name: lost[name] for name in factors})
            rework[case].append(measure_rework(engine, base, limits).rework_fractional)
    print(f"MF (ALS) on MovieLens 100k: K_base = {base.k_base} sweeps; {n_trials} failures losing {fraction:g} of 8 nodes;")
    print(f"lost rows restored from SCAR's checkpoint (priority, r = {r:g}, C = {interval}). Rework in sweeps (interpolated):")
    for case, values in rework.items():
        v = np.asarray(values)
        print(
            f"  restore {case:<8} mean {v.mean():6.3f}   max {v.max():6.3f}   exactly zero in {np.mean(v == 0):.0%} of failures"
        )
    total = sum(saved_rows.values())
    print(
        f"rows SCAR's priority saves chose (all saves before the failures): U {saved_rows['U'] / total:.0%}, "
        f"V {saved_rows['V'] / total:.0%} (U holds {layout.n_rows[0] / sum(layout.n_rows):.0%} of the rows)"
    )


if __name__ == "__main__":
    main()
