"""What scar.torch's checkpointer costs a training loop (a script, not a timed test).

An MLP of about 10 M parameters (1024-2048-2048-2048-10, float32) trained with Adam on CPU
(batch ``--batch``, one torch thread), the user's checkpoint interval C = 100 steps. One model
trains on through ``--pairs`` rounds of three blocks of C steps each, in rotating order, so the
blocks of a round run close together and see the same load (the machine is shared):

- ``plain``: no checkpoints;
- ``scar``: a :class:`~scar.torch.TorchCheckpointer` (priority, r = 1/4: a quarter of the rows
  with their Adam rows every 25 steps, over a :class:`~scar.checkpoint.stores.DirectoryStore`,
  persisted on a background thread), the wait for the block's last save inside its time;
- ``torch_save``: ``torch.save`` of the model's and the optimizer's state dicts, then fsync,
  once per block (every C steps), into the same directory.

Printed side by side: each kind's amortized overhead, the median over rounds of ``(block -
plain block) / plain block``, of the wall time and of the process's CPU time (target <= 3%);
for ``scar`` also the time its ``step()`` calls spend on the training thread (the least noisy
figure on a loaded machine); the bytes of a full and a partial save, split into parameters,
optimizer rows and scalars; the background persist's throughput against a memcpy of the same
bytes, and that of torch.save + fsync.

Usage::

    nice python benchmarks/bench_torch_checkpoint.py [--pairs 3] [--batch 32] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from scar.checkpoint.stores import DirectoryStore
from scar.torch import SCALARS, TorchCheckpointer

DIMS = (1024, 2048, 2048, 2048, 10)
INTERVAL, FRACTION = 100, 0.25


def make(seed: int = 0):
    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = []
    for a, b in zip(DIMS[:-1], DIMS[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    return model, torch.optim.Adam(model.parameters(), lr=1e-4)


def batches(n: int, batch: int):
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(batch, DIMS[0], generator=g), torch.randint(0, DIMS[-1], (batch,), generator=g)) for _ in range(n)]


class Clock:
    """Wall time, and the CPU time of the whole process (training and persist threads alike)."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def train(model, opt, data, steps: int, after_step) -> None:
    for t in range(1, steps + 1):
        x, y = data[(t - 1) % len(data)]
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        after_step(t)


class Bench:
    """One model and optimizer trained on through blocks of C steps of each kind, so a pair of
    blocks run close together in time and sees the same load (the machine is shared)."""

    def __init__(self, workdir: Path, batch: int) -> None:
        self.model, self.opt = make()
        self.data = batches(8, batch)
        train(self.model, self.opt, self.data, 2, lambda t: None)  # Adam's state exists
        self.path = workdir / "torch_save.pt"
        self.ck = TorchCheckpointer(
            self.model, self.opt, DirectoryStore(workdir / "scar"), policy="priority", interval=INTERVAL, fraction=FRACTION
        )
        self.ck.wait()  # the initial full save is not part of any block
        self.in_step: list[tuple[float, float]] = []
        self.saves: list[tuple[int, float]] = []

    def plain(self, t: int) -> None:
        pass

    def scar(self, t: int) -> None:
        s, c = time.perf_counter(), time.thread_time()
        self.ck.step()
        if t == INTERVAL:
            self.ck.wait()  # the block's last save is durable inside its time
        self.in_step.append((time.perf_counter() - s, time.thread_time() - c))

    def torch_save(self, t: int) -> None:
        if t % INTERVAL == 0:
            s = time.perf_counter()
            torch.save({"model": self.model.state_dict(), "optimizer": self.opt.state_dict()}, self.path)
            fd = os.open(self.path, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
            self.saves.append((self.path.stat().st_size, time.perf_counter() - s))

    def block(self, kind: str) -> tuple[float, float]:
        clock = Clock()
        train(self.model, self.opt, self.data, INTERVAL, getattr(self, kind))
        return clock.read()


def warm_up(workdir: Path) -> None:
    """Compile the row kernels (numba, once per process) outside the timed runs."""
    model = torch.nn.Linear(64, 64)
    opt = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 64)).sum().backward()
    opt.step()
    with TorchCheckpointer(model, opt, DirectoryStore(workdir / "warm"), interval=4, fraction=0.25) as ck:
        for _ in range(4):
            ck.step()


def memcpy_s(nbytes: int, runs: int = 5) -> float:
    src = np.ones(nbytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=3, help="rounds of one block of C = 100 steps of each kind (medians)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--dir", default=None, help="directory on the disk to measure (default: a temp dir)")
    args = ap.parse_args()
    torch.set_num_threads(1)

    workdir = Path(tempfile.mkdtemp(prefix="scar-bench-torch-", dir=args.dir))
    kinds = ("plain", "scar", "torch_save")
    blocks: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
    try:
        warm_up(workdir)
        bench = Bench(workdir, args.batch)
        for rep in range(args.pairs):
            for kind in kinds[rep % 3 :] + kinds[: rep % 3]:
                blocks[kind].append(bench.block(kind))
            print(f"  round {rep + 1}: " + "  ".join(f"{k} {blocks[k][-1][0]:6.2f} s" for k in kinds), flush=True)
        image = bench.ck.checkpointer.image
        persists, snapshots = list(bench.ck.background.persists), list(bench.ck.background.snapshot_seconds)
        bench.ck.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    n_params = sum(p.numel() for p in bench.model.parameters())
    print(
        f"\nMLP {'-'.join(map(str, DIMS))}: {n_params / 1e6:.2f} M parameters, Adam, batch {args.batch}; "
        f"{args.pairs} rounds of one block of C = {INTERVAL} steps of each kind; priority r = {FRACTION}"
    )
    plain = [b[0] for b in blocks["plain"]]
    print(
        f"plain step: {statistics.median(plain) / INTERVAL * 1e3:.1f} ms wall, "
        f"{statistics.median(b[1] for b in blocks['plain']) / INTERVAL * 1e3:.1f} ms CPU (medians over blocks)"
    )
    print(
        f"{'block':<12s} {'wall s':>8s} {'overhead':>9s} {'CPU s':>8s} {'overhead':>9s}   "
        "(median over rounds of (block - plain block) / plain block)"
    )
    for kind in kinds:
        w = statistics.median(b[0] for b in blocks[kind])
        c = statistics.median(b[1] for b in blocks[kind])
        ow = statistics.median((b[0] - p[0]) / p[0] for b, p in zip(blocks[kind], blocks["plain"]))
        oc = statistics.median((b[1] - p[1]) / p[1] for b, p in zip(blocks[kind], blocks["plain"]))
        print(f"{kind:<12s} {w:8.2f} {100 * ow:8.2f}% {c:8.2f} {100 * oc:8.2f}%")
    per_block = [bench.in_step[i : i + INTERVAL] for i in range(0, len(bench.in_step), INTERVAL)]
    sw = statistics.median(sum(x[0] for x in b) for b in per_block)
    sc = statistics.median(sum(x[1] for x in b) for b in per_block)
    print(
        f"scar step() on the training thread, per block: {sw:.2f} s wall = {100 * sw / statistics.median(plain):.2f}% of a "
        f"plain block, {sc:.2f} s thread CPU = {100 * sc / statistics.median(b[1] for b in blocks['plain']):.2f}%"
    )

    names = list(image.values)
    params = sum(image.values[n].nbytes for n in names if "@" not in n)
    opt_rows = sum(image.values[n].nbytes for n in names if "@" in n and n != SCALARS)
    scalars = image.values[SCALARS].nbytes if SCALARS in image.values else 0
    print(
        f"\nbytes of a full save: parameters {params / 2**20:.1f} MiB, Adam rows {opt_rows / 2**20:.1f} MiB "
        f"({opt_rows / params:.1f}x), scalars {scalars} B"
    )
    full_bytes = params + opt_rows + scalars
    partial = [p for p in persists if p[1] < full_bytes]
    full = [p for p in persists if p[1] == full_bytes]  # the initial save (priority saves are partial)
    if partial:
        nb = statistics.median(p[1] for p in partial)
        print(f"bytes of a partial save: {nb / 2**20:.1f} MiB ({nb / (params + opt_rows + scalars):.3f} of a full save)")
    print("\nbackground persist (DirectoryStore write: checksum, write, fsync, rename) against memcpy of the same bytes:")
    for label, group in (("full", full), ("partial", partial)):
        if not group:
            continue
        nb = statistics.median(p[1] for p in group)
        s = statistics.median(p[2] for p in group)
        m = memcpy_s(int(nb))
        print(
            f"  {label:<8s} {nb / 2**20:7.1f} MiB  {s * 1e3:8.1f} ms = {nb / s / 2**30:5.2f} GiB/s   "
            f"memcpy {m * 1e3:6.1f} ms = {nb / m / 2**30:5.2f} GiB/s   ratio {m / s:5.2f}"
        )
    saves = bench.saves
    if saves:
        nb, s = statistics.median(x[0] for x in saves), statistics.median(x[1] for x in saves)
        print(
            f"  torch.save + fsync of the full state (file {nb / 2**20:.1f} MiB): {s * 1e3:.1f} ms = {nb / s / 2**30:5.2f} GiB/s, on the training thread"
        )
    snap = statistics.median(snapshots)
    print(f"snapshot on the training thread (median per save): {snap * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
