"""The drop-in checkpointer for a PyTorch training loop (docs/design.md §12).

:class:`TorchCheckpointer` is a thin adapter: a :class:`~scar.checkpoint.checkpointer.Checkpointer`
over the module's parameters and the optimizer's state as named 2D arrays
(:class:`~scar.torch.state.ModelArrays`), its policy wrapped so that it chooses parameter rows and
saves their optimizer rows with them (:class:`~scar.torch.policy.RowGroupPolicy`), its store
written off the training thread (:class:`~scar.torch.persist.BackgroundStore`). The parameter
rows are the blocks, placed on ``n_nodes`` shards by :func:`scar.core.blocks.assign_blocks`; an
optimizer row lives on its parameter row's node. :meth:`TorchCheckpointer.recover` writes the
checkpointed rows of the lost nodes (``partial``) or of every node (``full``) back into the live
module and optimizer, in place, choosing the rows with :func:`scar.core.recovery.restored_rows`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from scar.checkpoint.checkpointer import Checkpointer
from scar.checkpoint.codecs import Codec
from scar.checkpoint.policies import CheckpointPolicy, make_checkpoint_policy
from scar.checkpoint.stores import CheckpointStore, InMemoryStore
from scar.core.blocks import BlockLayout, PlacementScheme, assign_blocks
from scar.core.recovery import check_recovery_policy, restored_rows
from scar.torch.persist import BackgroundStore, PersistError
from scar.torch.policy import RowGroupPolicy
from scar.torch.state import SCALARS, ModelArrays

__all__ = ["TorchCheckpointer"]

_STATE_FORMAT = 1


class TorchCheckpointer:
    """Prioritized, partial-recovery checkpoints of an ``nn.Module`` and its optimizer.

    Call :meth:`step` after every ``optimizer.step()`` (or :meth:`attach` it as the optimizer's
    step post-hook). Building it saves the current state in full (iteration 0) unless
    ``resume=True``, which continues the checkpoint the store holds instead.

    Parameters
    ----------
    module, optimizer : the model and an optimizer over (some of) its parameters.
    store : where saves go (a :class:`~scar.checkpoint.stores.DirectoryStore` for durable ones;
        default: in memory).
    policy : which rows a save takes: a name (``priority``, ``frequency``, ``full``,
        ``round_robin``, ``random``) or a :class:`~scar.checkpoint.policies.CheckpointPolicy`.
    interval, fraction : the checkpoint interval ``C`` (steps) and ``r``: a fractional policy
        saves ``r`` of the rows (with their optimizer rows) every ``r * C`` steps.
    n_nodes, placement, placement_seed : the shards the parameter rows are spread over.
    codec : how rows are written (default raw).
    background : persist saves on a background thread (default true).
    resume : continue the store's checkpoint (its newest record) instead of starting afresh.

    Raises
    ------
    ValueError
        An optimizer not over the module's parameters; a parameter row (with its optimizer rows)
        wider than one save's budget; fewer parameter rows than nodes; ``resume=False`` over a
        store that already holds a checkpoint; ``resume=True`` over a store written for another
        model. Each message names what is wrong.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        store: CheckpointStore | None = None,
        *,
        policy: str | CheckpointPolicy = "priority",
        interval: int = 100,
        fraction: float = 0.25,
        n_nodes: int = 8,
        placement: PlacementScheme = "round_robin",
        placement_seed: int = 0,
        codec: Codec | str | None = None,
        background: bool = True,
        resume: bool = False,
    ) -> None:
        self.model = ModelArrays(module, optimizer)
        self.module, self.optimizer = module, optimizer
        inner = policy if isinstance(policy, CheckpointPolicy) else make_checkpoint_policy(policy, interval, fraction)
        scalars = (SCALARS,) if self.model.scalar_keys else ()
        self.policy = RowGroupPolicy(inner, self.model.groups(), always=scalars)
        self.store = store if store is not None else InMemoryStore()
        self._background = BackgroundStore(self.store) if background else None
        arrays = self.model.arrays()
        layout = BlockLayout.from_arrays(arrays)
        params = self.policy.param_layout(layout)
        if inner.name != "full":
            budget = int(np.floor(inner.fraction * params.n_params + 1e-9))
            i = int(np.argmax(params.widths))
            if params.widths[i] > budget:
                raise ValueError(
                    f"a row of parameter {params.names[i]!r} holds {params.widths[i]} values with its optimizer state, "
                    f"more than one save's budget ({budget}: r={inner.fraction} of {params.n_params}): raise r"
                )
        self.n_nodes = int(n_nodes)
        self.placement, self.placement_seed = placement, int(placement_seed)
        #: Node of each parameter row, in parameter order (optimizer rows share their row's node).
        self.node_of_block = assign_blocks(params.n_blocks, self.n_nodes, placement, placement_seed)
        self._params_layout = params
        self._lookups: dict[str, list[torch.Tensor]] = {}
        self._hooks: list[Any] = []
        if self.policy.uses_accesses:
            self._watch_lookups()
        self._post_hook = None

        target = self._background or self.store
        if resume:
            self._check_store_schema(arrays)
            self._ck = Checkpointer.resume(self.policy, target, codec=codec)
        else:
            last = self.store.last_record()
            if last is not None:
                raise ValueError(
                    f"the store already holds a checkpoint (newest record: iteration {last.iteration}); pass resume=True "
                    "to continue it, or give an empty store"
                )
            self._ck = Checkpointer(self.policy, target, codec=codec)
            self._ck.start(arrays)
        #: Optimizer steps seen (the iteration of the next :meth:`step` is one more).
        self.iteration: int = int(self._ck.last_iteration)

    # -- training ---------------------------------------------------------------------------

    def step(self, touched: Mapping[str, Any] | None = None) -> bool:
        """Count one optimizer step; save if the policy says so. Returns whether it saved.

        ``touched`` (the ``frequency`` policy): parameter name -> row ids accessed this step (or a
        boolean row mask); default: the rows every ``nn.Embedding`` looked up since the last step
        and every row of the other optimized parameters. Raises :class:`PersistError` if the
        previous background save failed (the checkpointer then continues from the store's newest
        record), ValueError if the module's parameters changed since construction.
        """
        self.model.check_unchanged()
        k = self.iteration + 1
        try:
            if self._background is not None:
                self._background.poll()
            saved = self._ck.after_iteration(k, self.model.arrays(), self._touched(touched))
        except PersistError:
            self.iteration = k
            self._resync()
            raise
        self.iteration = k
        return saved

    def attach(self) -> None:
        """Call :meth:`step` after every ``optimizer.step()`` (a step post-hook); :meth:`detach` undoes it."""
        if self._post_hook is None:
            self._post_hook = self.optimizer.register_step_post_hook(lambda opt, args, kwargs: self.step())

    def detach(self) -> None:
        if self._post_hook is not None:
            self._post_hook.remove()
            self._post_hook = None

    def wait(self) -> None:
        """Block until the last save is durable in the store; raise :class:`PersistError` if it failed."""
        if self._background is None:
            return
        try:
            self._background.wait()
        except PersistError:
            self._resync()
            raise

    def close(self) -> None:
        """Wait for the last save, stop the background thread, remove the hooks."""
        try:
            self.wait()
        finally:
            if self._background is not None:
                self._background.close()
            self.detach()
            for h in self._hooks:
                h.remove()
            self._hooks.clear()

    def __enter__(self) -> TorchCheckpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- failures ---------------------------------------------------------------------------

    def rows_on(self, nodes: Iterable[int]) -> dict[str, np.ndarray]:
        """Parameter name -> the row ids held by ``nodes`` (their optimizer rows are the same)."""
        lost = np.isin(self.node_of_block, self._check_nodes(nodes))
        return {n: np.flatnonzero(m) for n, m in self._params_layout.row_masks(lost).items()}

    def recover(self, lost_nodes: Iterable[int], mode: str = "partial") -> int:
        """Write checkpointed rows back into the live module and optimizer, in place.

        ``partial`` (SCAR): the rows of parameters and optimizer state held by ``lost_nodes``
        take their checkpointed values; every other row keeps its live value, and so does the
        scalar state (the surviving nodes' ``step``). ``full``: every row and the scalar state
        take their checkpointed values, and the checkpointer restarts after its last save.

        Returns the step training continues from: the current one (``partial``) or that of the
        last save (``full``; rerun the steps after it). All inputs are checked before anything is
        written, and an interrupted write puts back the rows it had written, so the module and
        optimizer are never left half-restored. Optimizer state the optimizer has not created yet
        is left absent.

        Raises ValueError for an unknown mode, node ids out of range or parameters changed since
        construction; :class:`PersistError` if the last save failed.
        """
        check_recovery_policy(mode)
        if mode == "rebuild":
            raise ValueError("recover mode 'rebuild' needs a model that rebuilds rows; scar.torch offers 'partial' and 'full'")
        nodes = self._check_nodes(lost_nodes)
        self.model.check_unchanged()
        self.wait()  # restore what the store holds
        image = self._ck.image
        layout = self._ck.layout
        assert image is not None and layout is not None
        lost_params = self._params_layout.row_masks(np.isin(self.node_of_block, nodes))
        lost = {a: np.zeros(n, dtype=bool) for a, n in zip(layout.names, layout.n_rows)}
        for p, members in self.policy.groups.items():
            for a in (p, *members):
                lost[a] = lost_params[p]
        rows = restored_rows(mode, lost)  # type: ignore[arg-type]

        # Validate and stage everything before the first write.
        writes: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        for name, mask in rows.items():
            if name == SCALARS or not mask.any():
                continue
            live = self.model.tensor(name)
            if live is None:
                continue
            spec = self.model.spec(name)
            target = live.detach().view(spec.rows, spec.width)
            idx = np.flatnonzero(mask)
            values = torch.from_numpy(np.ascontiguousarray(image.values[name][idx])).to(target.device, target.dtype)
            writes.append((target, torch.from_numpy(idx).to(target.device), values))
        scalars = image.values[SCALARS][0].copy() if mode == "full" and SCALARS in image.values else None
        old_scalars = self.model.arrays()[SCALARS][0] if scalars is not None else None

        backups = [target.index_select(0, idx) for target, idx, _ in writes]
        done = 0
        try:
            with torch.no_grad():
                for target, idx, values in writes:
                    target.index_copy_(0, idx, values)
                    done += 1
                if scalars is not None:
                    self.model.write_scalars(scalars)
        except BaseException:
            with torch.no_grad():
                for (target, idx, _), backup in zip(writes[: done + 1], backups):
                    target.index_copy_(0, idx, backup)
                if old_scalars is not None:
                    self.model.write_scalars(old_scalars)
            raise
        self._lookups.clear()
        if mode == "full":
            self._ck.restart()
            self.iteration = int(self._ck.last_iteration)
        return self.iteration

    # -- state ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The checkpointer's state (plain data; ``torch.save`` and DCP take it). Waits for the
        last save first, so the state and the store agree."""
        self.wait()
        return {
            "format": _STATE_FORMAT,
            "model": self.model.describe(),
            "placement": {"n_nodes": self.n_nodes, "scheme": self.placement, "seed": self.placement_seed},
            "iteration": self.iteration,
            "checkpointer": self._ck.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state`` (:meth:`state_dict` output) over this store: build with
        ``resume=True`` first (a fresh build writes a new checkpoint). Raises ValueError naming a
        state of another model, placement, policy or codec, or one out of step with the store."""
        if state.get("format") != _STATE_FORMAT:
            raise ValueError(f"unsupported TorchCheckpointer state format {state.get('format')!r}; expected {_STATE_FORMAT}")
        if state["model"] != self.model.describe():
            raise ValueError(f"state_dict is of model {state['model']}, this checkpointer's is {self.model.describe()}")
        placement = {"n_nodes": self.n_nodes, "scheme": self.placement, "seed": self.placement_seed}
        if dict(state["placement"]) != placement:
            raise ValueError(f"state_dict is of placement {dict(state['placement'])}, this checkpointer's is {placement}")
        self.wait()
        ck = Checkpointer(self.policy, self._background or self.store, codec=state["checkpointer"]["codec"])
        ck.load_state_dict(state["checkpointer"])
        self._ck = ck
        self.iteration = int(state["iteration"])

    # -- figures ----------------------------------------------------------------------------

    @property
    def checkpointer(self) -> Checkpointer:
        """The underlying Checkpointer (its image is what a recovery restores)."""
        return self._ck

    @property
    def background(self) -> BackgroundStore | None:
        """The store wrapper that persists saves off the training thread (its ``persists`` and
        ``snapshot_seconds`` time them); None with ``background=False``."""
        return self._background

    @property
    def bytes_written(self) -> int:
        """Payload bytes saved so far (parameters, optimizer rows and scalars), the initial full save included."""
        return self._ck.bytes_written

    @property
    def last_save(self) -> int:
        return int(self._ck.last_save)

    # -- internals --------------------------------------------------------------------------

    def _check_nodes(self, nodes: Iterable[int]) -> np.ndarray:
        ids = list(nodes)
        for n in ids:
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
                raise ValueError(f"lost node ids must be integers, got {n!r}")
            if not 0 <= n < self.n_nodes:
                raise ValueError(
                    f"lost node {n} out of range: the rows are spread over {self.n_nodes} nodes (ids 0..{self.n_nodes - 1})"
                )
        return np.unique(np.asarray(ids, dtype=np.int64))

    def _check_store_schema(self, arrays: Mapping[str, np.ndarray]) -> None:
        schema = self.store.schema
        if schema is None:
            return  # Checkpointer.resume says what is missing
        want = {n: (a.shape, a.dtype) for n, a in arrays.items()}
        for n in [*want, *(n for n in schema if n not in want)]:
            if n not in want:
                raise ValueError(f"the store was written for another model: it holds array {n!r}, which this model lacks")
            if n not in schema:
                raise ValueError(f"the store was written for another model: it lacks this model's array {n!r}")
            if tuple(schema[n][0]) != tuple(want[n][0]) or np.dtype(schema[n][1]) != want[n][1]:
                raise ValueError(
                    f"the store was written for another model: array {n!r} is {tuple(schema[n][0])} {np.dtype(schema[n][1])} "
                    f"there, {tuple(want[n][0])} {want[n][1]} here"
                )

    def _resync(self) -> None:
        """After a failed persist: continue from the store's newest durable record."""
        ck = Checkpointer.resume(self.policy, self._background or self.store, codec=self._ck.codec)
        ck.last_iteration = max(int(ck.last_iteration), self.iteration)
        self._ck = ck

    def _watch_lookups(self) -> None:
        names = {id(p): n for n, p in self.module.named_parameters()}
        for m in self.module.modules():
            if isinstance(m, (torch.nn.Embedding, torch.nn.EmbeddingBag)) and id(m.weight) in names:
                name = names[id(m.weight)]

                def hook(mod, args, name=name):
                    if torch.is_grad_enabled() and args:
                        self._lookups.setdefault(name, []).append(args[0].detach().reshape(-1))

                self._hooks.append(m.register_forward_pre_hook(hook))

    def _touched(self, touched: Mapping[str, Any] | None) -> dict[str, np.ndarray] | None:
        if not self.policy.uses_accesses:
            return None
        names = set(self.model.param_names)
        if touched is not None:
            for n in touched:
                if n not in names:
                    raise ValueError(f"touched rows of {n!r}: not a parameter of the module ({sorted(names)})")
            out = {n: np.asarray(r) for n, r in touched.items()}
        else:
            looked_up = {
                id(m.weight) for m in self.module.modules() if isinstance(m, (torch.nn.Embedding, torch.nn.EmbeddingBag))
            }
            out = {}
            for s, p in zip(self.model.specs, self.model.params):
                if not s.optimized:
                    continue  # never changes
                if id(p) in looked_up:
                    ids = self._lookups.get(s.name)
                    out[s.name] = torch.cat(ids).cpu().numpy() if ids else np.zeros(0, dtype=np.int64)
                else:
                    out[s.name] = np.ones(s.rows, dtype=bool)
        self._lookups.clear()
        return out

    def __repr__(self) -> str:
        return f"TorchCheckpointer({self.policy.inner!r}, {type(self.store).__name__}, n_nodes={self.n_nodes}, iteration={self.iteration})"
