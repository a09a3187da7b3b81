"""A small convolutional network on MNIST, trained by minibatch SGD with momentum (torch).

The digits are average-pooled ``pool`` x ``pool`` (28x28 -> 14x14 by default) to keep an
iteration cheap on a CPU. The network: conv 3x3 (``channels[0]`` maps) - ReLU - max-pool 2 -
conv 3x3 (``channels[1]``) - ReLU - max-pool 2 - dense (``hidden``) - ReLU - dense (10).
One iteration is ``batches_per_iteration`` minibatches of ``batch_size`` digits drawn without
replacement from the iteration's stream. The objective is the mean cross-entropy over the whole
training set plus ``l2 / 2`` times the squared norm of the weights (not the biases).

Server state (docs/design.md §7.3): one array per layer, one row per output unit (a conv row is an
output channel, its weights flattened over (in, kh, kw)); a row holds the unit's weights and bias
and then their momentum (heavy ball, ``m = mu m + g; w -= lr m``), so a failure loses a row's
parameters and momentum together and a recovery restores both from the checkpoint. Heavy ball
has no step counter or other per-tensor scalar: the only counter is the iteration count
(``epoch``, worker state, for a learning-rate decay), which survives a server failure as
mlr's does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from scar._checks import check_int, check_number
from scar.models._torch import DTYPE, Layer, deterministic
from scar.models.base import Model, State


@dataclass(frozen=True)
class _Images:
    X: torch.Tensor  # (n, 1, side, side) float32
    y: torch.Tensor  # (n,) int64
    n_classes: int


class ConvNet(Model):
    """Small CNN on images, minibatch SGD with momentum.

    Parameters
    ----------
    learning_rate, momentum, l2 : heavy-ball SGD with weight decay ``l2`` on the weights.
    batch_size : digits per minibatch.
    batches_per_iteration : minibatches per iteration.
    channels : feature maps of the two conv layers.
    hidden : units of the hidden dense layer.
    pool : the digits are average-pooled ``pool`` x ``pool`` first (1 keeps 28x28).
    lr_decay : the step size at iteration ``k`` is ``learning_rate / (1 + lr_decay * k)``.
    n_train : train on this many digits, every ``n // n_train``-th (None: all), to keep the
        per-iteration objective over the whole training set cheap.
    """

    name = "cnn"
    iteration = "a fixed number of minibatches of SGD with momentum"
    objective_name = "cross-entropy + L2"
    server_params = ("conv1", "conv2", "fc1", "fc2")
    stochastic = True

    def __init__(
        self,
        learning_rate: float = 0.05,
        momentum: float = 0.9,
        l2: float = 1e-4,
        batch_size: int = 100,
        batches_per_iteration: int = 10,
        channels: tuple[int, int] | list[int] = (8, 16),
        hidden: int = 32,
        pool: int = 2,
        lr_decay: float = 0.0,
        n_train: int | None = None,
    ) -> None:
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.l2 = l2
        self.batch_size = batch_size
        self.batches_per_iteration = batches_per_iteration
        self.channels = channels
        self.hidden = hidden
        self.pool = pool
        self.lr_decay = lr_decay
        self.n_train = n_train

    def check_params(self) -> None:
        check_number("learning_rate", self.learning_rate, positive=True)
        check_number("l2", self.l2)
        check_number("lr_decay", self.lr_decay)
        if not 0.0 <= float(self.momentum) < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        for key in ("batch_size", "batches_per_iteration", "hidden", "pool"):
            check_int(key, getattr(self, key))
        if len(self.channels) != 2:
            raise ValueError(f"channels must be two integers (the conv layers' feature maps), got {self.channels!r}")
        for c in self.channels:
            check_int("channels", c)
        if self.n_train is not None:
            check_int("n_train", self.n_train)

    # -- shapes ---------------------------------------------------------------------------

    def _layers(self, side: int, n_classes: int) -> tuple[Layer, ...]:
        c1, c2 = (int(c) for c in self.channels)
        s = side // self.pool
        s = (s - 2) // 2  # conv 3x3, max-pool 2
        s = (s - 2) // 2
        if s < 1:
            raise ValueError(f"{side}x{side} images pooled by {self.pool} are too small for two conv + pool stages")
        return (
            Layer("conv1", c1, 1 * 9),
            Layer("conv2", c2, c1 * 9),
            Layer("fc1", int(self.hidden), c2 * s * s),
            Layer("fc2", n_classes, int(self.hidden)),
        )

    def server_shapes(self, dims):
        side = int(round(np.sqrt(dims["n_features"])))
        return {lay.name: (lay.n_out, lay.width) for lay in self._layers(side, dims["n_classes"])}

    def parameter_bytes(self, data: _Images) -> int:
        """Bytes of the weights and biases alone; the server rows hold as many again of momentum."""
        return sum(lay.parameter_bytes for lay in self._layers(self._side(data), data.n_classes))

    # -- the algorithm --------------------------------------------------------------------

    def prepare(self, dataset) -> _Images:
        deterministic()
        X = np.asarray(dataset.arrays["X"], dtype=DTYPE)
        y = np.asarray(dataset.arrays["y"], dtype=np.int64)
        side = int(round(np.sqrt(X.shape[1]))) if X.ndim == 2 else 0
        if X.ndim != 2 or side * side != X.shape[1] or y.shape != (X.shape[0],):
            raise ValueError(
                f"cnn needs square images X of shape (n, side**2) and labels y of shape (n,), got {X.shape} and {y.shape}"
            )
        if self.n_train is not None and self.n_train < X.shape[0]:
            keep = np.arange(self.n_train) * (X.shape[0] // self.n_train)  # every class, when sorted by label
            X, y = X[keep], y[keep]
        images = torch.from_numpy(np.ascontiguousarray(X.reshape(-1, 1, side, side)))
        if self.pool > 1:
            images = F.avg_pool2d(images, self.pool)
        return _Images(X=images.contiguous(), y=torch.from_numpy(y), n_classes=int(y.max()) + 1)

    def _side(self, data: _Images) -> int:
        return data.X.shape[-1] * self.pool

    def init_state(self, data: _Images, seed: int) -> State:
        rng = np.random.default_rng(seed)
        state: State = {lay.name: lay.init(rng) for lay in self._layers(self._side(data), data.n_classes)}
        state["epoch"] = np.zeros(1, dtype=np.int64)
        return state

    def _forward(self, layers: tuple[Layer, ...], params: list[torch.Tensor], X: torch.Tensor) -> torch.Tensor:
        conv1, conv2, fc1, fc2 = layers
        c1, c2, f1, f2 = params
        h = F.max_pool2d(F.relu(F.conv2d(X, c1[:, :-1].reshape(conv1.n_out, 1, 3, 3), c1[:, -1])), 2)
        h = F.max_pool2d(F.relu(F.conv2d(h, c2[:, :-1].reshape(conv2.n_out, conv1.n_out, 3, 3), c2[:, -1])), 2)
        h = F.relu(F.linear(h.flatten(1), f1[:, :-1], f1[:, -1]))
        return F.linear(h, f2[:, :-1], f2[:, -1])

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """The examples of the iteration, in minibatch order."""
        return rng.permutation(n)[: min(n, self.batch_size * self.batches_per_iteration)]

    def step(self, state: State, data: _Images, rng: np.random.Generator) -> None:
        layers = self._layers(self._side(data), data.n_classes)
        lr = self.learning_rate / (1.0 + self.lr_decay * float(state["epoch"][0]))
        order = torch.from_numpy(self._sample(data.X.shape[0], rng))
        for start in range(0, order.numel(), self.batch_size):
            idx = order[start : start + self.batch_size]
            params = [lay.leaf(state[lay.name]) for lay in layers]
            loss = F.cross_entropy(self._forward(layers, params, data.X[idx]), data.y[idx])
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for lay, g in zip(layers, grads):
                    lay.update(state[lay.name], g, lr, float(self.momentum), float(self.l2))
        state["epoch"][0] += 1

    def objective(self, state: State, data: _Images) -> float:
        layers = self._layers(self._side(data), data.n_classes)
        with torch.no_grad():
            params = [torch.from_numpy(state[lay.name][:, : lay.fan_in + 1]) for lay in layers]
            loss = F.cross_entropy(self._forward(layers, params, data.X), data.y, reduction="mean")
            decay = sum(float(torch.sum(p[:, :-1].double() ** 2)) for p in params)
        return float(loss) + 0.5 * float(self.l2) * decay

    def accuracy(self, state: State, data: _Images) -> float:
        """Training accuracy (for reports)."""
        layers = self._layers(self._side(data), data.n_classes)
        with torch.no_grad():
            params = [torch.from_numpy(state[lay.name][:, : lay.fan_in + 1]) for lay in layers]
            return float((self._forward(layers, params, data.X).argmax(1) == data.y).double().mean())
