"""A module and its optimizer as the named 2D arrays a Checkpointer saves (docs/design.md §12.1).

Every parameter becomes one array of rows: a tensor of shape ``(n, ...)`` is ``n`` rows of
``prod(...)`` values; a 1-D or 0-D tensor (a bias, a scale) is one row. Every optimizer state
tensor of the parameter's shape (Adam's ``exp_avg`` and ``exp_avg_sq``, SGD's
``momentum_buffer``) becomes an array row-aligned with it, named ``"<param>@<key>"``, so its rows
are saved, lost and restored with the parameter's. Scalar state (Adam's per-tensor ``step``) is
one more array, :data:`SCALARS`, of one row.

Optimizer state appears lazily, at the first step: until then the state arrays hold zeros (Adam's
initial moments) and the scalars 0; which keys the optimizer will keep is read from its state if
it has any, else from a probe step of the same optimizer class on a two-element dummy.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["SCALARS", "ModelArrays", "ParamSpec"]

#: Name of the array holding the optimizer's scalar state, one row saved with every save.
SCALARS = "@optimizer.scalars"

# dtypes numpy can view without a copy (bfloat16 has no numpy dtype).
_NUMPY_DTYPES = {torch.float16, torch.float32, torch.float64, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8}


@dataclass(frozen=True)
class ParamSpec:
    """One parameter as rows: ``rows x width`` values of ``shape`` and ``dtype``."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    rows: int
    width: int
    optimized: bool  # whether the optimizer updates it
    state_keys: tuple[str, ...]  # its row-aligned optimizer state

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": str(self.dtype),
            "optimized": self.optimized,
            "state": list(self.state_keys),
        }


def _rows_of(shape: torch.Size) -> tuple[int, int]:
    if len(shape) <= 1:
        return 1, int(math.prod(shape))
    return int(shape[0]), int(math.prod(shape[1:]))


def _numpy_rows(t: torch.Tensor, rows: int, width: int) -> np.ndarray:
    """A ``rows x width`` numpy view of a CPU tensor (a host copy of any other)."""
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    return t.numpy().reshape(rows, width)


class ModelArrays:
    """The named 2D arrays of a module's parameters and its optimizer's state.

    Raises ValueError (naming the parameter) at construction for an optimizer parameter that is
    not the module's, a non-contiguous or bfloat16 parameter, or optimizer state that is neither
    of the parameter's shape nor a scalar.
    """

    def __init__(self, module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        self.module, self.optimizer = module, optimizer
        named = list(module.named_parameters())
        if not named:
            raise ValueError(f"module {type(module).__name__} has no parameters to checkpoint")
        by_id = {id(p): n for n, p in named}
        group_of: dict[int, int] = {}
        for g, group in enumerate(optimizer.param_groups):
            for i, p in enumerate(group["params"]):
                if id(p) not in by_id:
                    raise ValueError(
                        f"optimizer parameter {i} of param group {g} (shape {tuple(p.shape)}) is not a parameter of "
                        f"module {type(module).__name__}: build the optimizer over module.parameters()"
                    )
                group_of[id(p)] = g
        keys = [self._state_keys(optimizer, g) for g in range(len(optimizer.param_groups))]
        self.params: list[torch.nn.Parameter] = [p for _, p in named]
        specs = []
        for n, p in named:
            if p.dtype not in _NUMPY_DTYPES:
                raise ValueError(
                    f"parameter {n!r} has dtype {p.dtype}, which numpy cannot hold; scar.torch takes {sorted(map(str, _NUMPY_DTYPES))}"
                )
            if not p.is_contiguous():
                raise ValueError(f"parameter {n!r} is not contiguous: its rows cannot be written back in place")
            rows, width = _rows_of(p.shape)
            row_keys = keys[group_of[id(p)]][0] if id(p) in group_of else ()
            specs.append(ParamSpec(n, tuple(p.shape), p.dtype, rows, width, id(p) in group_of, row_keys))
        self.specs: tuple[ParamSpec, ...] = tuple(specs)
        self.scalar_keys: list[tuple[int, str]] = [  # (param index, key) of each scalar
            (i, k) for i, (_, p) in enumerate(named) if id(p) in group_of for k in keys[group_of[id(p)]][1]
        ]
        self._scalars_of: dict[int, set[str]] = {}
        for i, k in self.scalar_keys:
            self._scalars_of.setdefault(i, set()).add(k)
        self._zeros: dict[str, np.ndarray] = {}

    # -- names ---------------------------------------------------------------------------

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.specs)

    def groups(self) -> dict[str, tuple[str, ...]]:
        """Parameter name -> the names of its row-aligned optimizer state arrays."""
        return {s.name: tuple(f"{s.name}@{k}" for k in s.state_keys) for s in self.specs}

    def describe(self) -> dict[str, Any]:
        """What identifies the model (JSON-able): parameters, shapes, dtypes, state keys, scalars."""
        return {
            "params": [s.describe() for s in self.specs],
            "scalars": [f"{self.specs[i].name}@{k}" for i, k in self.scalar_keys],
        }

    # -- the arrays ------------------------------------------------------------------------

    def check_unchanged(self) -> None:
        """Raise ValueError naming a parameter added, removed, replaced or reshaped since construction."""
        named = list(self.module.named_parameters())
        if len(named) != len(self.specs):
            raise ValueError(
                f"module now has {len(named)} parameters; the checkpointer was built for {len(self.specs)} "
                f"({', '.join(self.param_names)})"
            )
        for (n, p), s, q in zip(named, self.specs, self.params):
            if n != s.name:
                raise ValueError(f"module parameter {n!r} is where the checkpointer was built with {s.name!r}")
            if tuple(p.shape) != s.shape or p.dtype != s.dtype:
                raise ValueError(
                    f"parameter {n!r} is now {tuple(p.shape)} {p.dtype}; the checkpointer was built for {s.shape} {s.dtype}"
                )
            if p is not q:
                raise ValueError(
                    f"parameter {n!r} was replaced since the checkpointer was built (the optimizer holds the old one)"
                )

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array, parameters first, then optimizer state, then the scalars: numpy views of
        the live CPU tensors (zeros for state the optimizer has not created yet)."""
        out = {s.name: _numpy_rows(p, s.rows, s.width) for s, p in zip(self.specs, self.params)}
        for i, (s, p) in enumerate(zip(self.specs, self.params)):
            state = self.optimizer.state.get(p, {})
            unknown = set(state) - set(s.state_keys) - self._scalars_of.get(i, set())
            if unknown:  # e.g. a factored second moment the probe's 1-D dummy did not show
                raise ValueError(
                    f"{type(self.optimizer).__name__} keeps state {sorted(unknown)} for parameter {s.name!r} that its "
                    f"other parameters or its probe step did not show (known: row-aligned {list(s.state_keys)}); "
                    "scar.torch checkpoints state of the parameter's shape and scalars only"
                )
            for k in s.state_keys:
                name = f"{s.name}@{k}"
                if k in state:
                    t = state[k]
                    if not torch.is_tensor(t) or tuple(t.shape) != s.shape:
                        raise ValueError(
                            f"optimizer state {k!r} of parameter {s.name!r} has shape {tuple(np.shape(t))}, not the parameter's {s.shape}"
                        )
                    out[name] = _numpy_rows(t, s.rows, s.width)
                    self._zeros.pop(name, None)
                else:
                    if name not in self._zeros:
                        self._zeros[name] = np.zeros((s.rows, s.width), dtype=out[s.name].dtype)
                    out[name] = self._zeros[name]
        if self.scalar_keys:
            out[SCALARS] = np.array([[self._scalar(i, k) for i, k in self.scalar_keys]], dtype=np.float64)
        return out

    def _scalar(self, i: int, key: str) -> float:
        v = self.optimizer.state.get(self.params[i], {}).get(key, 0.0)
        return float(v.item() if torch.is_tensor(v) else v)

    def tensor(self, name: str) -> torch.Tensor | None:
        """The live tensor behind array ``name`` (None for state the optimizer has not created)."""
        if "@" not in name:
            return self.params[self.param_names.index(name)]
        pname, key = name.split("@", 1)
        return self.optimizer.state.get(self.params[self.param_names.index(pname)], {}).get(key)

    def spec(self, name: str) -> ParamSpec:
        return self.specs[self.param_names.index(name.split("@", 1)[0])]

    def write_scalars(self, values: np.ndarray) -> None:
        """Set the optimizer's scalar state to ``values`` (one per :attr:`scalar_keys`); state the
        optimizer has not created is left absent."""
        for (i, k), v in zip(self.scalar_keys, np.asarray(values).ravel()):
            state = self.optimizer.state.get(self.params[i])
            if state is None or k not in state:
                continue
            if torch.is_tensor(state[k]):
                state[k].fill_(float(v))
            else:
                state[k] = type(state[k])(v)

    # -- the optimizer's state keys ----------------------------------------------------

    @staticmethod
    def _state_keys(optimizer: torch.optim.Optimizer, g: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(row-aligned keys, scalar keys) of param group ``g``: from its state, else a probe."""
        group = optimizer.param_groups[g]
        for p in group["params"]:
            state = optimizer.state.get(p)
            if state and p.numel() > 1:  # a one-element parameter's moments look like scalars
                return _classify(state, p, type(optimizer).__name__)
        if not group["params"]:
            return (), ()
        p0 = group["params"][0]
        accepted = inspect.signature(type(optimizer).__init__).parameters
        hyper = {k: v for k, v in group.items() if k != "params" and k in accepted}
        dummy = torch.zeros(2, dtype=p0.dtype, device=p0.device, requires_grad=True)
        try:
            probe = type(optimizer)([dummy], **hyper)
            dummy.grad = torch.ones_like(dummy)
            probe.step()
        except Exception as e:
            raise ValueError(
                f"cannot learn the state layout of {type(optimizer).__name__} before its first step (a probe step "
                f"failed: {e}); take one optimizer step before building the checkpointer"
            ) from e
        return _classify(probe.state[dummy], dummy, type(optimizer).__name__)


def _classify(state: Mapping[str, Any], p: torch.Tensor, optimizer: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    rows, scalars = [], []
    for k, v in state.items():
        if torch.is_tensor(v) and tuple(v.shape) == tuple(p.shape) and v.numel() > 1:
            rows.append(k)
        elif (torch.is_tensor(v) and v.numel() == 1) or isinstance(v, (int, float)):
            scalars.append(k)
        else:
            raise ValueError(
                f"{optimizer} keeps state {k!r} of shape {tuple(np.shape(v))} for a parameter of shape {tuple(p.shape)}: "
                "scar.torch checkpoints state of the parameter's shape (row-aligned) and scalars only"
            )
    return tuple(sorted(rows)), tuple(sorted(scalars))
