"""What the planner's validation costs, with and without the baseline engine (a script, not a
timed test).

For one experiment of a finished default run (its dataset, first baseline and failure trials
under ``--results``), plans with rework calibrated on the trials and simulates every candidate
``--replicates`` times twice: with runs executed by the plain in-process engine, and by
:class:`~scar.measure.baseline_engine.BaselineEngine` (the default), which reads the iterations
a run shares with the baseline off it. Prints the CPU seconds of both, their ratio, the model
steps each computed and whether every run came out identical.

Usage::

    python benchmarks/bench_planner_validation.py --experiment mf/movielens [--results results]
        [--config config/config.yaml] [--replicates 3]
"""

from __future__ import annotations

import argparse
import glob
import time
from pathlib import Path

import yaml
from threadpoolctl import threadpool_limits

import scar.stages.config as scar_config
from scar.checkpoint.strategy import get_strategy
from scar.measure.baseline_engine import BaselineEngine
from scar.measure.engine import InProcessEngine
from scar.planner.plan import plan_for_baseline
from scar.planner.simulation import simulate_run
from scar.planner.validation import settings_to_check
from scar.stages.files import load_experiment
from scar.stages.planner import read_trials


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--experiment", required=True, help="model/dataset, e.g. mf/movielens")
    ap.add_argument("--results", default="results", help="a finished run's results/ directory")
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--replicates", type=int, default=3)
    args = ap.parse_args()
    cfg = yaml.safe_load(Path(args.config).read_text())
    m, d = args.experiment.split("/")
    exp = {(e.model, e.dataset): e for e in scar_config.experiments(cfg)}[(m, d)]
    planner, trial_settings = scar_config.planner_settings(cfg), scar_config.trial_settings(cfg)
    r = Path(args.results)
    model, _, data, baseline = load_experiment(
        m, exp.params, r / "data" / f"{d}.npz", r / "baseline" / m / d / f"seed{exp.seeds[0]}" / "baseline.npz"
    )
    trials = read_trials(sorted(glob.glob(str(r / "trials" / m / d / "seed*" / "batch*.csv"))))
    p = plan_for_baseline(planner, baseline, trials)
    settings = settings_to_check(p)

    def run_all(cached: bool) -> tuple[float, int, list]:
        steps, runs = 0, []
        t0 = time.process_time()
        for scored, _ in settings:
            strategy = get_strategy(str(scored["strategy"])).with_r(float(scored["r"]))
            for rep in range(args.replicates):
                engine = InProcessEngine(model, data, baseline.seed)
                if cached:
                    engine = BaselineEngine(engine, baseline)
                runs.append(
                    simulate_run(
                        model, data, baseline, strategy, int(scored["C"]), p.inputs, trial_settings, replicate=rep, engine=engine
                    )
                )
                steps += engine.steps_computed if cached else runs[-1].iterations
        return time.process_time() - t0, steps, runs

    with threadpool_limits(1):
        plain_s, plain_steps, plain = run_all(False)
        cached_s, cached_steps, cached = run_all(True)
    n = len(plain)
    print(f"{m}/{d}: {len(settings)} settings x {args.replicates} replicates = {n} simulated runs, 1 thread")
    print(f"  plain engine     {plain_s:8.1f} CPU s   {plain_steps:6d} model steps")
    print(f"  baseline engine  {cached_s:8.1f} CPU s   {cached_steps:6d} model steps")
    print(f"  ratio plain / baseline engine: {plain_s / cached_s:.2f}x;  identical runs: {plain == cached}")


if __name__ == "__main__":
    main()
