"""What the torch models share: deterministic CPU kernels and server rows that hold a layer's
parameters with their optimizer state (docs/design.md §7.3).

The state stays numpy (every engine, checkpoint and recovery handles it unchanged); a step wraps
the arrays with :func:`torch.from_numpy` (shared memory, no copy) and updates them in place.
A server row of a layer is one output unit: its incoming weights, its bias and then the same
number of optimizer slots (momentum). Holding the optimizer slots in the row, as a parameter
server does, puts a parameter and its optimizer state on the same node under any placement:
a failure loses both, a checkpoint saves both, a recovery restores both.

Torch's CPU threads follow the caller's ``threadpool_limits`` (threadpoolctl limits torch's
OpenMP pool), so a job's ``threads`` setting applies to torch as to BLAS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

#: Server rows are float32, torch's own precision.
DTYPE = np.float32


def deterministic() -> None:
    """Refuse nondeterministic kernels (CPU kernels are deterministic at a fixed thread count)."""
    torch.use_deterministic_algorithms(True)


@dataclass(frozen=True)
class Layer:
    """A layer whose server rows are its output units: ``fan_in`` weights and a bias per row,
    followed by ``slots`` times as many optimizer values (0: plain SGD, 1: momentum)."""

    name: str
    n_out: int
    fan_in: int
    slots: int = 1

    @property
    def width(self) -> int:
        return (1 + self.slots) * (self.fan_in + 1)

    def init(self, rng: np.random.Generator) -> np.ndarray:
        """Rows of a freshly initialised layer: He-uniform weights, zero bias and zero slots."""
        rows = np.zeros((self.n_out, self.width), dtype=DTYPE)
        bound = np.sqrt(6.0 / self.fan_in)
        rows[:, : self.fan_in] = rng.uniform(-bound, bound, size=(self.n_out, self.fan_in))
        return rows

    def leaf(self, rows: np.ndarray) -> torch.Tensor:
        """A copy of the layer's parameters, (n_out, fan_in + 1) = [weights | bias], for autograd."""
        return torch.from_numpy(rows[:, : self.fan_in + 1]).clone().requires_grad_(True)

    def update(self, rows: np.ndarray, grad: torch.Tensor, lr: float, mu: float, l2: float) -> None:
        """One SGD step on ``rows`` in place, from ``grad`` (the gradient of :meth:`leaf`):
        heavy ball with slots, ``m = mu m + g + l2 w; w -= lr m`` (weight decay on the weights,
        not the bias), plain ``w -= lr (g + l2 w)`` without."""
        t = torch.from_numpy(rows)
        params = t[:, : self.fan_in + 1]
        g = grad.clone()
        g[:, : self.fan_in].add_(params[:, : self.fan_in], alpha=l2)
        if self.slots:
            m = t[:, self.fan_in + 1 :]
            m.mul_(mu).add_(g)
            params.sub_(m, alpha=lr)
        else:
            params.sub_(g, alpha=lr)

    @property
    def parameter_bytes(self) -> int:
        """Bytes of the parameters alone (weights and biases, without optimizer slots)."""
        return self.n_out * (self.fan_in + 1) * np.dtype(DTYPE).itemsize
