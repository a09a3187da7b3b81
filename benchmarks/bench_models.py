"""Speed of the models' iterations, and of our LDA sampler against the `lda` package.

Run: ``.venv/bin/python benchmarks/bench_models.py`` (``--help`` for options). It prints

1. tokens per second of one collapsed-Gibbs sweep, ours (numba) and the ``lda`` package's
   (Cython), on the same corpus with the same K and number of sweeps, one after the other in
   this run, and their ratio. Each side does what its own training loop does per sweep (we
   draw one uniform per token; ``lda`` shuffles its pool of uniforms) and nothing else (no
   log-likelihood). Medians over ``--repeats`` runs.
2. the median time of one iteration of every model on its default datasets (compilation is
   excluded: one warm-up iteration first), so regressions show.

Timings on shared machines are noisy: compare ratios and medians, not single numbers.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from scar.datasets import load_dataset
from scar.datasets.corpora import count_matrix
from scar.measure.engine import iteration_rng
from scar.models import make_model


def time_ours(dataset, n_topics: int, sweeps: int, alpha: float, beta: float) -> float:
    model = make_model("lda", {"n_topics": n_topics, "alpha": alpha, "beta": beta, "resync_every": 0})
    data = model.prepare(dataset)
    state = model.init_state(data, seed=0)
    model.step(state, data, iteration_rng(0, 0))  # compile (or load the cache) outside the timer
    start = time.perf_counter()
    for k in range(1, sweeps + 1):
        model.step(state, data, iteration_rng(0, k))
    return data.n_tokens * sweeps / (time.perf_counter() - start)


def time_lda_package(X, n_topics: int, sweeps: int, alpha: float, beta: float) -> float:
    import lda

    model = lda.LDA(n_topics=n_topics, n_iter=sweeps, alpha=alpha, eta=beta, random_state=0)
    model._initialize(X)
    rng = np.random.RandomState(0)
    rands = model._rands.copy()
    start = time.perf_counter()
    for _ in range(sweeps):  # the body of lda.LDA._fit's loop, without the log-likelihood
        rng.shuffle(rands)
        model._sample_topics(rands)
    return len(model.WS) * sweeps / (time.perf_counter() - start)


def iteration_times(repeats: int) -> list[tuple[str, str, float]]:
    cases = [
        ("mlr", {"learning_rate": 0.1, "batch_size": 100, "l2": 1e-3}, "mnist", {}),
        ("mf", {"rank": 10, "l2": 0.05}, "movielens", {}),
        ("mf", {"rank": 10, "l2": 0.05}, "jester", {"n_users": 5000}),
        ("lda", {"n_topics": 20}, "reuters", {}),
        ("lda", {"n_topics": 20}, "20newsgroups", {}),
    ]
    out = []
    for model_name, params, dataset_name, options in cases:
        model = make_model(model_name, params)
        data = model.prepare(load_dataset(dataset_name, **options))
        state = model.init_state(data, seed=0)
        model.step(state, data, iteration_rng(0, 0))
        times = []
        for k in range(1, repeats + 1):
            start = time.perf_counter()
            model.step(state, data, iteration_rng(0, k))
            times.append(time.perf_counter() - start)
        out.append((model_name, dataset_name, statistics.median(times)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="reuters", help="corpus dataset (default: reuters, embedded)")
    parser.add_argument("--topics", type=int, default=20)
    parser.add_argument("--sweeps", type=int, default=50, help="sweeps per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per side (median reported)")
    args = parser.parse_args()

    dataset = load_dataset(args.corpus)
    X = count_matrix(dataset).toarray()
    alpha, beta = 0.1, 0.01
    ours, theirs = [], []
    for _ in range(args.repeats):  # interleaved, so that drifts in machine load hit both sides
        ours.append(time_ours(dataset, args.topics, args.sweeps, alpha, beta))
        theirs.append(time_lda_package(X, args.topics, args.sweeps, alpha, beta))
    print(
        f"LDA collapsed Gibbs on {dataset.label}: {int(X.sum()):,} tokens, K = {args.topics}, {args.sweeps} sweeps, {args.repeats} runs"
    )
    print(f"{'sampler':<28}{'tokens/s (median)':>20}{'min':>14}{'max':>14}")
    for name, values in (("scar (numba)", ours), ("lda package (Cython)", theirs)):
        print(f"{name:<28}{statistics.median(values):>20,.0f}{min(values):>14,.0f}{max(values):>14,.0f}")
    ratios = [a / b for a, b in zip(ours, theirs)]
    print(f"ratio scar / lda: median {statistics.median(ratios):.2f}x (per-run {min(ratios):.2f}x to {max(ratios):.2f}x)")
    print()
    print(f"{'model':<8}{'dataset':<16}{'median s / iteration':>22}")
    for model_name, dataset_name, seconds in iteration_times(args.repeats):
        print(f"{model_name:<8}{dataset_name:<16}{seconds:>22.4f}")


if __name__ == "__main__":
    main()
