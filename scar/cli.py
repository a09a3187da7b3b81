"""``scar`` command line: what is registered, and the rework bound at a glance.

The evaluation itself runs through Snakemake (see the README); this is for quick look-ups.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from scar import __version__
from scar.bounds import iteration_cost_bound
from scar.datasets import available_datasets
from scar.models import available_models, make_model
from scar.recovery import STRATEGIES


def _info(args: argparse.Namespace) -> int:
    print(f"scar {__version__}")
    print("models:")
    for name in available_models():
        model = make_model(name)
        print(f"  {name:<12} one iteration = {type(model).iteration}; server params {model.server_params}")
    print("datasets:", ", ".join(available_datasets()))
    print("strategies (checkpoint policy, recovery policy):")
    for s in STRATEGIES.values():
        print(f"  {s.name:<20} ({s.checkpoint}, {s.recovery})")
    return 0


def _bound(args: argparse.Namespace) -> int:
    value = iteration_cost_bound(args.delta, args.iteration, args.c, args.initial_distance)
    print(f"{value:.4f}")
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
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:
        print(f"scar: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
