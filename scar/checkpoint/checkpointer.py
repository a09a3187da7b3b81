"""The Checkpointer: a checkpoint policy run over a training run (docs/design.md §4).

A :class:`Checkpointer` binds a :class:`~scar.checkpoint.policies.CheckpointPolicy` (which rows
to save, and when), a :class:`~scar.checkpoint.codecs.Codec` (how they are written) and a
:class:`~scar.checkpoint.stores.CheckpointStore` (where), and keeps the checkpoint image: what
a restore would return right now, which the priority rule reads at every save. :func:`replay`
runs one over a recorded trajectory, as the measurement code does for every failure.

A Checkpointer is stateful (:meth:`Checkpointer.state_dict`, :meth:`Checkpointer.load_state_dict`)
and every record it writes carries its state after that save, so after a crash
:meth:`Checkpointer.resume` continues from a :class:`~scar.checkpoint.stores.DirectoryStore`
exactly where the last durable record left it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from scar.checkpoint.codecs import Codec, EncodedRows, RawCodec, make_codec
from scar.checkpoint.policies import CheckpointPolicy
from scar.checkpoint.stores import Checkpoint, CheckpointStore, InMemoryStore, MissingCheckpointError
from scar.core._rows import copy_rows, gather_rows, reused_buffer
from scar.core.blocks import BlockLayout

__all__ = ["Checkpointer", "ServerStateAt", "TouchedAt", "TouchedRows", "replay"]

#: Iteration ``k`` -> the server-held arrays after iteration ``k`` (0: the initial parameters).
ServerStateAt = Callable[[int], Mapping[str, np.ndarray]]
#: Rows an iteration touched: array name -> row ids (repeats count) or a boolean row mask;
#: arrays not named were not touched. ``None`` for an iteration: every row was touched.
TouchedRows = Mapping[str, np.ndarray] | None
#: Iteration ``k`` -> the rows iteration ``k`` touched.
TouchedAt = Callable[[int], TouchedRows]

_STATE_FORMAT = 1


class Checkpointer:
    """Runs a policy over a training run and writes what it selects to a store.

    Call order: :meth:`start` with the initial parameters (a full save at iteration 0), then
    :meth:`after_iteration` once per completed iteration ``k = 1, 2, ...`` (strictly
    increasing). Or, over a recorded trajectory, :meth:`advance_to` / :func:`replay`. After a
    restart: a new Checkpointer over the same store, then :meth:`load_state_dict` (or
    :meth:`resume`), then :meth:`after_iteration` for the iterations after the last save.

    Attributes
    ----------
    image : Checkpoint or None
        What a restore from the store returns now (``decode(encode(x))`` of every row's last
        save; for the raw codec exactly those values), and the iteration of each row's last save.
        Updated in place by every save; do not modify. With an in-memory store this *is* the
        store's image (one copy, not two).
    n_saves : int
        Saves so far, the initial full save included.
    layout : BlockLayout or None
        The blocks of the arrays, fixed by :meth:`start`.
    last_iteration : int or None
        The last iteration passed to :meth:`start` / :meth:`after_iteration`.
    last_save : int or None
        The iteration of the last save.
    accesses : ndarray or None
        For a policy that :attr:`~scar.checkpoint.policies.CheckpointPolicy.uses_accesses`: per
        block, the accesses reported (``touched`` of :meth:`after_iteration`) since its last save.

    Parameters
    ----------
    policy : which rows to save, and when.
    store : where saves go (default: a new :class:`~scar.checkpoint.stores.InMemoryStore`).
    codec : how rows are written: a :class:`~scar.checkpoint.codecs.Codec` or its name
        (default ``"raw"``).
    """

    def __init__(
        self, policy: CheckpointPolicy, store: CheckpointStore | None = None, *, codec: Codec | str | None = None
    ) -> None:
        self.policy = policy
        self.store = store if store is not None else InMemoryStore()
        self.codec = make_codec(codec)
        # The policy budgets in the bytes of the codec the saves are written with.
        if policy.codec is None:
            policy.codec = self.codec
        elif (policy.codec.name, policy.codec.params()) != (self.codec.name, self.codec.params()):
            raise ValueError(f"the policy budgets for codec {policy.codec!r}, the Checkpointer writes with {self.codec!r}")
        self.layout: BlockLayout | None = None
        self.image: Checkpoint | None = None
        self.n_saves = 0
        self.last_iteration: int | None = None
        self.last_save: int | None = None
        self._bytes = 0
        self._shared_image = False
        self._gather: dict[str, np.ndarray] = {}
        self._source: ServerStateAt | None = None
        self._dtypes: dict[str, str] | None = None
        self._touched_at: TouchedAt | None = None
        self.accesses: np.ndarray | None = None

    # -- the run ------------------------------------------------------------------------

    def start(self, params: Mapping[str, np.ndarray]) -> None:
        """Full save of the initial parameters (iteration 0); starts a new run."""
        arrays = {n: np.asarray(a) for n, a in params.items()}
        self.layout = BlockLayout.from_arrays(arrays)
        self._dtypes = {n: a.dtype.str for n, a in arrays.items()}
        self.n_saves, self._bytes, self.last_save, self.last_iteration = 0, 0, None, None
        self.image = None
        self.accesses = np.zeros(self.layout.n_blocks, dtype=np.int64) if self.policy.uses_accesses else None
        self._full_save(0, arrays)

    def after_iteration(self, k: int, params: Mapping[str, np.ndarray], touched: TouchedRows = None) -> bool:
        """Save at the end of iteration ``k`` if the policy says so; return whether it did.

        ``touched``: the rows iteration ``k`` accessed (:data:`TouchedRows`; ``None``: every
        row), counted for a policy that uses accesses and ignored by the others.

        If the store raises, the image is left as the store holds it but the policy's state
        (a round robin cursor) may have moved on: continue with :meth:`resume` from the store.
        """
        if self.image is None or self.layout is None:
            raise RuntimeError("Checkpointer.start() must be called before after_iteration()")
        if self.last_iteration is not None and k <= self.last_iteration:
            raise ValueError(f"iterations must increase: got {k} after {self.last_iteration}")
        if self.accesses is not None:
            self._count(touched)
        self.last_iteration = int(k)
        if not self.policy.is_due(k):
            return False
        if self.accesses is not None:
            mask = self.policy.select(k, self.layout, params, self.image, accesses=self.accesses)
        else:
            mask = self.policy.select(k, self.layout, params, self.image)
        arrays = {n: np.asarray(params[n]) for n in self.layout.names}
        # A codec that encodes against the image writes every row of a save that takes them all
        # against it too: a self-contained full record would be raw, and blow a byte budget.
        if mask.all() and not self.codec.needs_previous:
            self._full_save(k, arrays)
            return True
        if self.accesses is not None:
            self.accesses[mask] = 0  # before the write: its record carries the state after the save
        rows = {n: r for n, r in self.layout.rows_of(mask).items() if r.size}
        if isinstance(self.codec, RawCodec):
            # The store copies the rows straight from `arrays` (in memory: one fused row copy).
            nbytes = sum(r.size * arrays[n].shape[1] * arrays[n].dtype.itemsize for n, r in rows.items())
            written = self.store.write(k, arrays, rows, meta=self._meta_after(k, nbytes))
            if not self._shared_image:
                for n, r in rows.items():
                    copy_rows(arrays[n], r, self.image.values[n])
        else:
            encoded: dict[str, EncodedRows] = {}
            decoded: dict[str, np.ndarray] = {}
            for n, r in rows.items():
                values = gather_rows(arrays[n], r, reused_buffer(self._gather, n, arrays[n], r.size))
                previous = self.image.values[n][r] if self.codec.needs_previous else None
                encoded[n] = self.codec.encode(values, previous)
                if not self._shared_image:
                    # May alias the gather buffer: it is not reused before the image takes it below.
                    decoded[n] = self.codec.decode(encoded[n], previous)
            nbytes = sum(e.nbytes for e in encoded.values())
            written = self.store.write_encoded(k, self.codec, encoded, rows, meta=self._meta_after(k, nbytes))
            for n, r in rows.items():
                if not self._shared_image:
                    self.image.values[n][r] = decoded[n]
        if not self._shared_image:
            for n, r in rows.items():
                self.image.saved_at[n][r] = k
        self._after_write(k, nbytes, written)
        return True

    def advance_to(
        self, until: int, server_state_at: ServerStateAt | None = None, touched_at: TouchedAt | None = None
    ) -> Checkpointer:
        """Replay the trajectory up to the saves of iterations ``< until``; returns ``self``.

        Starts with ``server_state_at(0)`` if not started, then calls :meth:`after_iteration`
        for every iteration after :attr:`last_iteration` and before ``until`` (a failure after
        iteration ``until`` strikes before that iteration's save). ``server_state_at`` is
        remembered: later calls may omit it. Calling again with a larger ``until`` continues
        where the last call stopped, so an image at every ``T`` costs one replay in all.
        ``touched_at`` (remembered likewise) gives each iteration's accessed rows; without it
        every row counts as touched.
        """
        if server_state_at is not None:
            self._source = server_state_at
        if touched_at is not None:
            self._touched_at = touched_at
        if self._source is None:
            raise ValueError("advance_to needs server_state_at (the trajectory) on its first call")
        if int(until) != until or until < 1:
            raise ValueError(f"until must be an integer >= 1 (saves of iterations < until), got {until}")
        if self.image is None:
            self.start(self._source(0))
        assert self.last_iteration is not None
        if until - 1 < self.last_iteration:
            raise ValueError(f"cannot replay back to iteration {until - 1}: already at iteration {self.last_iteration}")
        for k in range(self.last_iteration + 1, int(until)):
            self.after_iteration(k, self._source(k), None if self._touched_at is None else self._touched_at(k))
        return self

    @property
    def bytes_written(self) -> int:
        """Bytes the codec wrote over the whole run (across restarts), the initial save included."""
        return self._bytes

    # -- state --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The Checkpointer's state (JSON-able): policy identity and state, codec, layout,
        dtypes, save count, last iteration and save, bytes written."""
        layout = None
        if self.layout is not None:
            layout = {"names": list(self.layout.names), "n_rows": list(self.layout.n_rows), "widths": list(self.layout.widths)}
        return {
            "format": _STATE_FORMAT,
            "policy": self.policy.config(),
            "policy_state": self.policy.state_dict(),
            "codec": self.codec.name,
            "codec_params": self.codec.params(),
            "layout": layout,
            "dtypes": None if self._dtypes is None else dict(self._dtypes),
            "n_saves": self.n_saves,
            "last_iteration": self.last_iteration,
            "last_save": self.last_save,
            "bytes_written": self._bytes,
            "accesses": None if self.accesses is None else self.accesses.tolist(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue a run from ``state`` (:meth:`state_dict` output); the image is rebuilt from
        the store (``store.read()``, or the in-memory store's own image).

        Raises
        ------
        ValueError
            ``state`` is of another policy (name, interval, fraction, seed), codec or layout
            than this Checkpointer, or the store holds another schema, or the store's newest
            record is not the state's last save; the message names what differs.
        MissingCheckpointError
            The store holds nothing to resume from.
        """
        if state.get("format") != _STATE_FORMAT:
            raise ValueError(f"unsupported Checkpointer state format {state.get('format')!r}; expected {_STATE_FORMAT}")
        if dict(state["policy"]) != self.policy.config():
            raise ValueError(
                f"state_dict is of policy {dict(state['policy'])}, this Checkpointer's policy is {self.policy.config()}"
            )
        if state["codec"] != self.codec.name:
            raise ValueError(f"state_dict is of codec {state['codec']!r}, this Checkpointer's codec is {self.codec.name!r}")
        if dict(state.get("codec_params", {})) != self.codec.params():
            raise ValueError(
                f"state_dict is of codec {state['codec']!r} with {dict(state.get('codec_params', {}))}, "
                f"this Checkpointer's codec has {self.codec.params()}"
            )
        if state["layout"] is None:
            raise ValueError("state_dict is of a Checkpointer that was never started: nothing to resume")
        lay = state["layout"]
        layout = BlockLayout(names=tuple(lay["names"]), n_rows=tuple(lay["n_rows"]), widths=tuple(lay["widths"]))
        if self.layout is not None and self.layout != layout:
            raise ValueError(f"state_dict is of layout {layout}, this Checkpointer's layout is {self.layout}")
        dtypes = {n: np.dtype(d) for n, d in state["dtypes"].items()}
        want = {n: ((r, w), dtypes[n]) for n, r, w in zip(layout.names, layout.n_rows, layout.widths)}
        schema = self.store.schema
        if schema is None:
            self.store.read()  # raises MissingCheckpointError (or the reason the store is unreadable)
            schema = self.store.schema
        if schema is None or list(schema) != list(want) or any(schema[n] != want[n] for n in want):
            raise ValueError(f"the store holds arrays {_describe(schema)}; the state_dict's layout is {_describe(want)}")
        info = self.store.last_record()
        if info is None:  # pragma: no cover - a schema implies a record
            raise MissingCheckpointError("the store holds no record to resume from")
        if info.iteration != state["last_save"]:
            raise ValueError(
                f"the store's newest record saved iteration {info.iteration}, the state_dict's last save was at "
                f"iteration {state['last_save']}: state and store are out of step (resume() reads the store's own state)"
            )

        view = self.store.image_view()
        if view is not None:
            self.image, self._shared_image = view, True
        else:
            ck = self.store.read()
            self.image, self._shared_image = Checkpoint(values=ck.values, saved_at=ck.saved_at), False
        self.layout = layout
        self._dtypes = {n: d.str for n, d in dtypes.items()}
        self.policy.load_state_dict(state["policy_state"])
        self.n_saves = int(state["n_saves"])
        self.last_iteration = None if state["last_iteration"] is None else int(state["last_iteration"])
        self.last_save = int(state["last_save"])
        self._bytes = int(state["bytes_written"])
        if self.policy.uses_accesses:
            counts = state.get("accesses")
            if counts is None or len(counts) != layout.n_blocks:
                raise ValueError(
                    f"state_dict holds no access counts over the {layout.n_blocks} blocks the frequency policy needs"
                )
            self.accesses = np.asarray(counts, dtype=np.int64)

    def restart(self) -> None:
        """The job restarted from this Checkpointer's last save (a whole-job rollback): the next
        iteration it sees is the one after :attr:`last_save`, whatever it had reached."""
        if self.last_save is None:
            raise RuntimeError("Checkpointer.start() must be called before restart()")
        self.last_iteration = self.last_save

    @classmethod
    def resume(cls, policy: CheckpointPolicy, store: CheckpointStore, *, codec: Codec | str | None = None) -> Checkpointer:
        """A Checkpointer continuing from the state recorded with the store's newest record.

        The state is that after the newest durable save, so a crash at any point (even mid-write)
        resumes consistently: the caller continues with the iterations after :attr:`last_save`.
        ``codec`` defaults to the one the state names, with its parameters (a quantizer's
        ``bits``). Raises as :meth:`load_state_dict`, and
        ValueError if the newest record was not written by a Checkpointer.
        """
        info = store.last_record()
        if info is None:
            raise MissingCheckpointError("nothing to resume from: the store holds no records")
        state = (info.meta or {}).get("checkpointer")
        if state is None:
            raise ValueError(
                f"the store's newest record (seq {info.seq}, iteration {info.iteration}) carries no Checkpointer state; "
                "pass a state_dict to load_state_dict instead"
            )
        if codec is None:
            codec = make_codec(state["codec"], **dict(state.get("codec_params", {})))
        ck = cls(policy, store, codec=codec)
        ck.load_state_dict(state)
        return ck

    # -- internals ----------------------------------------------------------------------

    def _count(self, touched: TouchedRows) -> None:
        """Add one iteration's accesses to :attr:`accesses`."""
        assert self.layout is not None and self.accesses is not None
        if touched is None:
            self.accesses += 1
            return
        for name, rows in touched.items():
            if name not in self.layout.names:
                raise ValueError(f"touched rows of {name!r}: not a checkpointed array (arrays: {list(self.layout.names)})")
            i = self.layout.names.index(name)
            n_rows, start = self.layout.n_rows[i], int(self.layout.offsets[i])
            rows = np.asarray(rows)
            if rows.dtype == bool:
                if rows.shape != (n_rows,):
                    raise ValueError(f"touched mask of {name!r} has shape {rows.shape}, expected ({n_rows},)")
                self.accesses[start : start + n_rows] += rows
                continue
            if rows.size and (rows.min() < 0 or rows.max() >= n_rows):
                raise ValueError(f"touched rows of {name!r} out of range [0, {n_rows}): {rows.min()}..{rows.max()}")
            np.add.at(self.accesses, start + rows.astype(np.int64, copy=False), 1)

    def _full_save(self, k: int, arrays: Mapping[str, np.ndarray]) -> None:
        if self.accesses is not None:
            self.accesses.fill(0)
        if isinstance(self.codec, RawCodec):
            nbytes = sum(a.nbytes for a in arrays.values())
            written = self.store.write(k, arrays, None, meta=self._meta_after(k, nbytes))
            decoded = arrays
        else:
            encoded = {n: self.codec.encode(a, None) for n, a in arrays.items()}
            nbytes = sum(e.nbytes for e in encoded.values())
            written = self.store.write_encoded(k, self.codec, encoded, None, meta=self._meta_after(k, nbytes))
            decoded = {n: self.codec.decode(e, None) for n, e in encoded.items()}
        view = self.store.image_view()
        if view is not None:
            self.image, self._shared_image = view, True
        elif self.image is None:
            self.image = Checkpoint(
                values={n: np.array(a, copy=True, order="C") for n, a in decoded.items()},
                saved_at={n: np.full(a.shape[0], k, dtype=np.int64) for n, a in decoded.items()},
            )
            self._shared_image = False
        else:
            for n, a in decoded.items():
                np.copyto(self.image.values[n], a)
                self.image.saved_at[n].fill(k)
        self._after_write(k, nbytes, written)

    def _meta_after(self, k: int, nbytes: int) -> dict[str, Any]:
        """The record's meta: this Checkpointer's state as it will be once the write is durable."""
        state = self.state_dict()
        state.update(n_saves=self.n_saves + 1, last_iteration=int(k), last_save=int(k), bytes_written=self._bytes + int(nbytes))
        return {"checkpointer": state}

    def _after_write(self, k: int, nbytes: int, written: int) -> None:
        if written != nbytes:  # pragma: no cover - a store/codec disagreement is a bug
            raise RuntimeError(f"the store counted {written} bytes for a write of {nbytes} codec bytes")
        self._bytes += int(nbytes)
        self.n_saves += 1
        self.last_save = int(k)
        self.last_iteration = int(k)

    def __repr__(self) -> str:
        return f"Checkpointer({self.policy!r}, {type(self.store).__name__}, codec={self.codec.name!r}, n_saves={self.n_saves})"


def _describe(schema: Mapping[str, tuple[tuple[int, int], np.dtype]] | None) -> str:
    if schema is None:
        return "none"
    return ", ".join(f"{n} {shape[0]}x{shape[1]} {np.dtype(dt)}" for n, (shape, dt) in schema.items())


def replay(
    policy: CheckpointPolicy,
    server_state_at: ServerStateAt,
    until: int,
    *,
    codec: Codec | str | None = None,
    store: CheckpointStore | None = None,
    touched_at: TouchedAt | None = None,
) -> Checkpointer:
    """The Checkpointer of ``policy`` after the saves of iterations ``< until`` of a trajectory.

    Starts at iteration 0 with ``server_state_at(0)``, then ``after_iteration(k,
    server_state_at(k))`` for ``k = 1 .. until - 1``: a failure after iteration ``until``
    strikes before that iteration's save. Its :attr:`~Checkpointer.image` and
    :attr:`~Checkpointer.bytes_written` are what the policy holds and wrote by then; call
    :meth:`~Checkpointer.advance_to` with a larger ``until`` to go on without replaying from 0.
    """
    return Checkpointer(policy, store, codec=codec).advance_to(until, server_state_at, touched_at)
