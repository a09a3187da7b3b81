"""``scar`` command line: what is registered, and the rework bound at a glance.

The evaluation itself runs through Snakemake (see the README); this is for quick look-ups.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from scar import __version__
from scar.checkpoint.strategy import STRATEGIES
from scar.core.bounds import iteration_cost_bound
from scar.datasets import available_datasets
from scar.models import available_models, make_model


def _info(args: argparse.Namespace) -> int:
    print(f"scar {__version__}")
    print("models:")
    for name in available_models():
        model = make_model(name)
        print(f"  {name:<12} one iteration = {type(model).iteration}; server params {model.server_params}")
    print("datasets:", ", ".join(available_datasets()))
    print("strategies (checkpoint policy, recovery policy) and codec where not raw:")
    for s in STRATEGIES.values():
        codec = "" if s.codec == "raw" else f" codec {s.codec} {dict(s.codec_params) or ''}".rstrip()
        print(f"  {s.name:<20} ({s.checkpoint}, {s.recovery}){codec}")
    return 0


def _bound(args: argparse.Namespace) -> int:
    value = iteration_cost_bound(args.delta, args.iteration, args.c, args.initial_distance)
    print(f"{value:.4f}")
    return 0


def _floats(text: str, option: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{option} must be a comma-separated list of numbers, got {text!r}") from None


def _plan(args: argparse.Namespace) -> int:
    import glob
    import json
    from pathlib import Path

    import pandas as pd

    from scar.planner.calibration import BOUND, fit_rework_model
    from scar.planner.plan import PlanInputs, TrajectoryMovement, format_plan, plan

    # Defaults from a baseline: its summary.json (c, ||x_0 - x*||, K_base, time per iteration)
    # or its baseline.npz (the same, plus the trajectory the policies are replayed on).
    known: dict = {}
    movement = None
    if args.baseline is not None:
        path = Path(args.baseline)
        if not path.exists():
            raise ValueError(f"--baseline: {path} does not exist")
        if path.suffix == ".json":
            try:
                s = json.loads(path.read_text())
                known = {"c": s["c_hat"], "initial_distance": s["initial_distance_hat"], "run_iterations": s["k_base"],
                         "seconds_per_iteration": s["seconds_per_iteration"]}  # fmt: skip
            except (ValueError, KeyError) as err:
                raise ValueError(f"--baseline: {path} is not a baseline summary.json ({err})") from None
        else:
            from scar.measure.trajectory import Baseline

            b = Baseline.load(path)
            if b.contraction is None:
                raise ValueError(f"--baseline: no contraction rate could be fitted on {path}; give --c and --initial-distance")
            snaps = {n: b.snapshots[n] for n in b.server_params}
            movement = TrajectoryMovement(snaps, seed=b.seed, touched_at=b.touched_at)
            known = {"c": b.contraction.c, "initial_distance": b.contraction.initial_distance, "run_iterations": b.k_base,
                     "seconds_per_iteration": b.seconds_per_iteration,
                     "model_bytes": float(sum(a[0].nbytes for a in snaps.values()))}  # fmt: skip
    if args.n_params is not None:
        known["model_bytes"] = float(args.n_params) * args.bytes_per_param
    for key in ("c", "initial_distance", "run_iterations", "seconds_per_iteration"):
        if getattr(args, key) is not None:
            known[key] = getattr(args, key)
    missing = [
        f"--{k.replace('_', '-')}" for k in ("c", "initial_distance", "run_iterations", "seconds_per_iteration") if k not in known
    ]
    if "model_bytes" not in known:
        missing.append("--n-params")
    if missing:
        raise ValueError(f"missing {', '.join(missing)} (give them, or --baseline to read them from a baseline)")
    if (args.write_seconds_per_byte is None) == (args.checkpoint_seconds is None):
        raise ValueError("give exactly one of --write-seconds-per-byte and --checkpoint-seconds")
    if args.checkpoint_seconds is not None and not args.checkpoint_seconds >= 0:
        raise ValueError(f"--checkpoint-seconds must be >= 0, got {args.checkpoint_seconds}")
    if args.bytes_per_param <= 0:
        raise ValueError(f"--bytes-per-param must be positive, got {args.bytes_per_param}")
    write = args.write_seconds_per_byte
    if write is None:
        write = args.checkpoint_seconds / known["model_bytes"] if known["model_bytes"] > 0 else 0.0
    inputs = PlanInputs(
        model_bytes=known["model_bytes"],
        write_seconds_per_byte=write,
        seconds_per_iteration=known["seconds_per_iteration"],
        mtbf_iterations=args.mtbf,
        failure_fraction=args.failure_fraction,
        c=known["c"],
        initial_distance=known["initial_distance"],
        run_iterations=int(known["run_iterations"]),
        restore_seconds_per_byte=args.restore_seconds_per_byte,
    )
    rework_model = BOUND
    if args.trials:
        files = sorted(f for pattern in args.trials for f in glob.glob(pattern))
        if not files:
            raise ValueError(f"--trials: no file matches {' '.join(args.trials)}")
        trials = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
        rework_model = fit_rework_model(trials, inputs.c, inputs.initial_distance, min_trials=args.min_calibration_trials)
    intervals = None if args.intervals is None else [int(x) if x == int(x) else x for x in _floats(args.intervals, "--intervals")]
    result = plan(
        inputs,
        movement,
        strategies=[s.strip() for s in args.strategies.split(",") if s.strip()],
        intervals=intervals,
        r_values=_floats(args.r_values, "--r-values"),
        rework_model=rework_model,
    )
    print(format_plan(result, top=args.top))
    print("perturbation norms from the baseline trajectory" if movement is not None else
          "perturbation norms from the contraction model (no trajectory; priority scored as round_robin)")  # fmt: skip
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scar", description=__doc__)
    parser.add_argument("--version", action="version", version=f"scar {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="list models, datasets and strategies").set_defaults(func=_info)
    b = sub.add_parser("bound", help="worst-case rework of one perturbation: log_{1/c}(1 + delta / (c^T d0))")
    b.add_argument("--delta", type=float, required=True, help="perturbation norm ||delta||")
    b.add_argument("--iteration", "-T", type=int, required=True, help="iteration T of the perturbation")
    b.add_argument("--c", type=float, required=True, help="contraction rate c in (0, 1)")
    b.add_argument("--initial-distance", type=float, required=True, help="||x_0 - x*||")
    b.set_defaults(func=_bound)
    p = sub.add_parser(
        "plan",
        help="recommend the checkpoint interval C, fraction r and strategy with the least expected cost per iteration",
        description="Bound-driven checkpoint planner (see scar.planner.plan for what is a bound and what an estimate).",
    )
    p.add_argument(
        "--baseline", help="a baseline.npz (c, ||x_0 - x*||, K, time per iteration, size and trajectory) or summary.json"
    )
    p.add_argument("--n-params", type=float, help="parameters in the model (server-held)")
    p.add_argument("--bytes-per-param", type=float, default=8.0, help="bytes per parameter (default 8)")
    p.add_argument("--write-seconds-per-byte", type=float, help="checkpoint write cost per byte (seconds)")
    p.add_argument("--checkpoint-seconds", type=float, help="measured time to write one full checkpoint (seconds)")
    p.add_argument("--restore-seconds-per-byte", type=float, help="read-back cost per byte (default: the write cost)")
    p.add_argument("--seconds-per-iteration", type=float, help="time of one training iteration")
    p.add_argument("--mtbf", type=float, required=True, help="mean iterations between failures")
    p.add_argument("--failure-fraction", type=float, required=True, help="fraction of server nodes a failure takes, in (0, 1]")
    p.add_argument("--c", type=float, help="contraction rate c in (0, 1)")
    p.add_argument("--initial-distance", type=float, help="||x_0 - x*||")
    p.add_argument("--run-iterations", type=int, help="iterations of a run (failures strike uniformly in it)")
    p.add_argument("--strategies", default="traditional,scar,full_partial,round_robin_partial", help="comma-separated")
    p.add_argument("--intervals", help="comma-separated candidate C (default: powers of 2 below the run length, and C*)")
    p.add_argument("--r-values", default="1,0.5,0.25,0.125", help="comma-separated candidate r")
    p.add_argument(
        "--trials", nargs="+", help="failure-trial CSVs (globs) of this experiment: rework is priced by a model fitted on them"
    )
    p.add_argument(
        "--min-calibration-trials", type=int, default=10, help="fewer partial-recovery trials: price rework by the bound"
    )
    p.add_argument("--top", type=int, default=8, help="candidates to print")
    p.set_defaults(func=_plan)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:
        print(f"scar: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
