from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"


def run_snakemake(workdir: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run this environment's Snakemake on the project's workflow in ``workdir``."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=workdir)


@pytest.fixture
def tiny_config() -> dict:
    return yaml.safe_load((REPO / "tests" / "configs" / "tiny.yaml").read_text())


@pytest.fixture
def default_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def run_from(model, data, state, *, start, target, cap, seed, diverge_above=float("inf")):
    """Continue ``state`` (after iteration ``start``) to ``target`` on an in-process engine, as
    the measurement does; ``state`` is updated in place to where the run stopped."""
    from scar.measure.engine import InProcessEngine
    from scar.measure.rework import RunLimits, run_until_target

    engine = InProcessEngine(model, data, seed)
    engine.load(state, start)
    run = run_until_target(engine, target=target, limits=RunLimits(cap, diverge_above))
    state.update(engine.state())
    return run


@pytest.fixture(scope="module")
def quadratic_baseline():
    """A quadratic whose curvatures spread over [0.5, 1] (no single contraction rate), with its baseline."""
    from scar.measure.trajectory import run_baseline
    from scar.models import make_model

    model = make_model("quadratic", {"curvature_min": 0.5, "curvature_max": 1.0, "step_size": 0.1})
    return model, run_baseline(model, None, seed=0, max_iters=150, tol=0.001, final_window=5)


def random_walk(shapes, dtype, n_iters, seed, *, scale=1.0, step=1.0):
    """A trajectory x_0 .. x_n of named 2D arrays (``p0``, ``p1``, ...): each step moves a random
    60% of the rows by amounts of random size (``step``, exponentially distributed)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = {f"p{i}": (rng.standard_normal(s) * scale).astype(dtype) for i, s in enumerate(shapes)}
    out = [{n: a.copy() for n, a in x.items()}]
    for _ in range(n_iters):
        for a in x.values():
            moving = rng.random(a.shape[0]) < 0.6
            a[moving] += (rng.standard_normal((int(moving.sum()), a.shape[1])) * rng.exponential(step)).astype(dtype)
        out.append({n: a.copy() for n, a in x.items()})
    return out


#: Every checkpoint policy, by registry name.
POLICY_NAMES = ("full", "priority", "round_robin", "random", "frequency", "sensitive_priority")


def checkpoint_runs(*, max_rows, dtypes, max_every, max_iters):
    """A hypothesis strategy of checkpointed runs: ``(shapes, dtype, r, C, n_iters, policy,
    seed)``, with ``r * C`` whole and no block wider than one save's budget (that is a
    configuration error, tested on its own)."""
    from fractions import Fraction

    from hypothesis import assume
    from hypothesis import strategies as st

    @st.composite
    def runs(draw):
        n_arrays = draw(st.integers(1, 3))
        shapes = [(draw(st.integers(1, max_rows)), draw(st.integers(1, 5))) for _ in range(n_arrays)]
        dtype = draw(st.sampled_from(dtypes))
        r = draw(st.sampled_from([Fraction(1), Fraction(1, 2), Fraction(1, 4), Fraction(1, 8)]))
        C = int(draw(st.integers(1, max_every)) / r)
        n_iters = draw(st.integers(1, max_iters))
        policy = draw(st.sampled_from(POLICY_NAMES))
        seed = draw(st.integers(0, 2**32 - 1))
        assume(max(w for _, w in shapes) <= int(r * sum(a * b for a, b in shapes)))
        return shapes, dtype, float(r), C, n_iters, policy, seed

    return runs()


def greedy_fill(order, sizes, budget):
    """The budget rule written plainly (the reference of the vectorised one): walk ``order``,
    take each block that still fits in what is left, skip the others."""
    import numpy as np

    mask = np.zeros(len(sizes), dtype=bool)
    left = budget
    for b in order:
        if sizes[b] <= left:
            mask[b] = True
            left -= sizes[b]
    return mask
