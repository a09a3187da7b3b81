"""Codecs at equal bytes and sensitivity-aware priority against SCAR: measure it.

For each experiment named (``model/dataset`` of ``config/config.yaml``, baseline seed 0), runs
``n_trials`` failure positions, each at every failure fraction of the config, under the
strategies named, with the config's checkpoint settings (C, r, nodes). Every strategy writes at
most the bytes a raw save of the same r writes (docs/design.md §4). Prints, per experiment, each
strategy's mean rework and bytes written and the paired difference (strategy - reference, same
failures) with its 95% Student-t interval, for the references ``scar`` and ``full_partial``;
writes every trial row to ``--out`` (CSV).

Run: ``PYTHONPATH=. .venv/bin/python experiments/codecs_at_equal_bytes.py mf/movielens --trials 4``
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import pandas as pd
import yaml

from scar.checkpoint.strategy import Strategy, get_strategy
from scar.datasets import load_dataset
from scar.measure.trajectory import run_baseline
from scar.measure.trials import TrialSettings, plan_trials, run_trial, trials_frame
from scar.models import make_model
from scar.report.analysis import mean_ci
from scar.stages.config import experiments

STRATEGIES = ("scar", "full_partial", "delta_partial", "quantized_partial", "lc_partial", "lc_full_partial",
              "sensitive_partial", "sensitive_lc_partial")  # fmt: skip


def _strategy(text: str) -> Strategy:
    """``lc_partial`` or, with other codec bits, ``lc_partial:bits=8``."""
    name, _, bits = text.partition(":bits=")
    s = get_strategy(name)
    return dataclasses.replace(s, name=text, codec_params=(("bits", int(bits)),)) if bits else s


def run(key: str, config: dict, strategies: tuple[str, ...], n_trials: int, timed: bool = False) -> pd.DataFrame:
    (exp,) = [e for e in experiments(config) if f"{e.model}/{e.dataset}" == key]
    entry = config["datasets"][exp.dataset]
    dataset = load_dataset(exp.dataset, entry.get("source", "embedded"), **(entry.get("options") or {}))
    model = make_model(exp.model, exp.params)
    data = model.prepare(dataset)
    base = run_baseline(model, data, seed=exp.seeds[0], max_iters=exp.max_iters, tol=exp.tol)
    f, c = config["failures"], config["checkpoints"]
    settings = TrialSettings(
        strategies=tuple(s.with_r(r) for s in map(_strategy, strategies) for r in (c["r_values"] if s.fractional else [1])),
        interval=int(c["interval"]), n_nodes=int(f["n_nodes"]),
        placement=f["placement"], rework_cap=float(config["rework_cap"]), seed=int(config["seed"]),
    )  # fmt: skip
    specs = plan_trials(n_trials, f["fractions"], tuple(f["window"]), int(config["seed"]), key=key)
    rows, t0 = [], time.perf_counter()
    for spec in specs:
        rows += run_trial(model, data, base, spec, settings, dataset=exp.dataset, dataset_label=dataset.label)
    print(f"{key}: K_base {base.k_base}, {len(specs)} failures in {time.perf_counter() - t0:.0f}s", flush=True)
    if timed:
        # Each strategy alone over the same failures: what adding it to a run costs.
        for s in settings.strategies:
            one = dataclasses.replace(settings, strategies=(s,))
            t = time.perf_counter()
            for spec in specs:
                run_trial(model, data, base, spec, one)
            print(f"  {s.name:<22} {(time.perf_counter() - t) / len(specs):.3f} s per failure", flush=True)
    return trials_frame(rows)


def report(frame: pd.DataFrame) -> None:
    for (model, dataset), g in frame.groupby(["model", "dataset"], sort=False):
        wide = g.pivot_table(index=["failure_fraction", "trial"], columns="strategy", values="rework_fractional")
        nbytes = g.assign(b=g["checkpoint_bytes"] + g["checkpoint_index_bytes"]).groupby("strategy")["b"].mean()
        print(f"\n{model}/{dataset}: {len(wide)} failures; rework in iterations; bytes incl. row indices")
        print(f"  {'strategy':<22}{'rework':>8}{'MB':>8}   {'- scar [95% CI]':<28}{'- full_partial [95% CI]':<28}")
        for s in wide.columns:
            cells = []
            for ref in ("scar", "full_partial"):
                if ref not in wide or s == ref:
                    cells.append("")
                    continue
                m, lo, hi = mean_ci((wide[s] - wide[ref]).to_numpy())
                cells.append(f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}]")
            print(f"  {s:<22}{wide[s].mean():8.3f}{nbytes[s] / 1e6:8.3f}   {cells[0]:<28}{cells[1]:<28}")


def markdown(frame: pd.DataFrame) -> str:
    """One row per experiment: each strategy's mean rework (MB written), and the best
    strategy's (other than SCAR and strategies identical to it there) paired difference from
    SCAR with its 95% interval, as a Markdown table."""
    names = list(dict.fromkeys(frame["strategy"]))
    lines = ["| experiment | failures | " + " | ".join(names) + " | best vs scar: difference [95% CI] |",
             "|" + "---|" * (len(names) + 3)]  # fmt: skip
    for (model, label), g in frame.groupby(["model", "dataset_label"], sort=False):
        wide = g.pivot_table(index=["failure_fraction", "trial"], columns="strategy", values="rework_fractional")
        nbytes = g.assign(b=g["checkpoint_bytes"] + g["checkpoint_index_bytes"]).groupby("strategy")["b"].mean()
        cells = [f"{wide[s].mean():.2f} ({nbytes[s] / 1e6:.2f} MB)" if s in wide else "—" for s in names]
        # Strategies that are SCAR on this model (sensitive_partial without a declared sensitivity) do not count.
        others = [s for s in names if s != "scar" and s in wide and not wide[s].equals(wide["scar"])]
        best = min(others, key=lambda s: wide[s].mean())
        m, lo, hi = mean_ci((wide[best] - wide["scar"]).to_numpy())
        ref = wide["scar"].mean()
        lines.append(
            f"| {model} / {label} | {len(wide)} | " + " | ".join(cells)
            + f" | {best}: {m:+.2f} [{lo:+.2f}, {hi:+.2f}] ({m / ref:+.0%} of scar) |"
        )  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("experiments", nargs="*", help="model/dataset, e.g. mf/movielens")
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--out", default=None)
    ap.add_argument("--time", action="store_true", help="also time each strategy alone (seconds per failure)")
    ap.add_argument("--from-csv", nargs="*", default=None, help="report these trial CSVs instead of running")
    ap.add_argument("--figure", default=None, help="also draw the rework-against-bytes figure here")
    args = ap.parse_args()
    with open(args.config) as fh:
        config = yaml.safe_load(fh)
    if args.from_csv is not None:
        frame = pd.concat([pd.read_csv(p) for p in args.from_csv], ignore_index=True)
    else:
        frames = [run(k, config, tuple(args.strategies.split(",")), args.trials, args.time) for k in args.experiments]
        frame = pd.concat(frames, ignore_index=True)
    if args.out:
        frame.to_csv(args.out, index=False)
    report(frame)
    print("\n" + markdown(frame))
    if args.figure:
        from scar.report.figures import plot_rework_vs_bytes

        plot_rework_vs_bytes(frame, args.figure)


if __name__ == "__main__":
    main()
