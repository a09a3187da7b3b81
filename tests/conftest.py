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
