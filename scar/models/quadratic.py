"""Gradient descent on a strongly convex quadratic: the case where the theory is exact.

``f(x) = 1/2 * sum_i lambda_i * ||x_i||^2`` over the rows ``x_i`` of ``x`` (one curvature per
block), minimised by gradient descent with step ``eta``. The fixed point is ``x* = 0`` and
every iteration multiplies row ``i`` by ``1 - eta * lambda_i``, so the contraction rate is
exactly ``c = max_i |1 - eta * lambda_i|``. With one curvature for all rows the convergence is
exactly linear, and the worst-case iteration-cost bound is attained (up to rounding) by a
perturbation pointing away from ``x*``. Used to check the measurement and the bound in closed
form; it needs no dataset.
"""

from __future__ import annotations

import numpy as np

from scar.models.base import Model, State


class Quadratic(Model):
    """Gradient descent on ``1/2 * sum_i lambda_i ||x_i||^2``.

    Parameters
    ----------
    n_blocks, width : shape of ``x``.
    curvature_min, curvature_max : curvatures spread evenly over the rows.
    step_size : the gradient step ``eta``.
    init_scale : norm of the initial point ``x_0`` (a seeded random direction).
    """

    name = "quadratic"
    iteration = "one full gradient step"
    objective_name = "f(x)"
    server_params = ("x",)

    def __init__(
        self,
        n_blocks: int = 16,
        width: int = 4,
        curvature_min: float = 1.0,
        curvature_max: float = 1.0,
        step_size: float = 0.1,
        init_scale: float = 10.0,
    ) -> None:
        self.n_blocks = n_blocks
        self.width = width
        self.curvature_min = curvature_min
        self.curvature_max = curvature_max
        self.step_size = step_size
        self.init_scale = init_scale

    @property
    def curvatures(self) -> np.ndarray:
        return np.linspace(self.curvature_min, self.curvature_max, self.n_blocks)

    @property
    def contraction_rate(self) -> float:
        """The exact ``c = max_i |1 - eta * lambda_i|``."""
        return float(np.max(np.abs(1.0 - self.step_size * self.curvatures)))

    def server_shapes(self, dims):
        return {"x": (self.n_blocks, self.width)}

    def init_state(self, data, seed: int) -> State:
        x = np.random.default_rng(seed).standard_normal((self.n_blocks, self.width))
        x *= self.init_scale / np.linalg.norm(x)
        return {"x": x}

    def step(self, state: State, data, rng: np.random.Generator) -> None:
        state["x"] *= (1.0 - self.step_size * self.curvatures)[:, None]

    def objective(self, state: State, data) -> float:
        x = state["x"]
        return float(0.5 * np.sum(self.curvatures[:, None] * x * x))
