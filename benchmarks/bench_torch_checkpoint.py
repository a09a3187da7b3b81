"""What scar.torch's checkpointer costs a training loop (a script, not a timed test).

An MLP of about 10 M parameters (1024-2048-2048-2048-10, float32) trained with Adam on CPU
(batch ``--batch``, one torch thread), ``--steps`` steps per run, the user's checkpoint interval
C = 100. Runs, repeated ``--repeats`` times in rotating order (medians printed):

- ``plain``: no checkpoints;
- ``scar``: a :class:`~scar.torch.TorchCheckpointer` (priority, r = 1/4: a quarter of the rows
  with their Adam rows every 25 steps, over a :class:`~scar.checkpoint.stores.DirectoryStore`,
  persisted on a background thread), the wait for the last save inside the timing;
- ``torch.save``: ``torch.save`` of the model's and the optimizer's state dicts, then fsync,
  every C steps, into the same directory.

Printed side by side: each run's amortized overhead, ``(run - plain) / plain`` in percent of the
training time (target <= 3%), and for ``scar`` also the time its ``step()`` calls spend on the
training thread; the bytes of one full and one partial save, split into parameters, optimizer
rows and scalars; the background persist's throughput against a memcpy of the same bytes.

Usage::

    nice python benchmarks/bench_torch_checkpoint.py [--steps 200] [--repeats 3] [--dir DIR]
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


def train(model, opt, data, steps: int, after_step) -> float:
    t0 = time.perf_counter()
    for t in range(1, steps + 1):
        x, y = data[(t - 1) % len(data)]
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        after_step(t)
    return time.perf_counter() - t0


def run_plain(steps, data, workdir) -> dict:
    model, opt = make()
    train(model, opt, data, 2, lambda t: None)  # Adam state exists, as in the other runs
    return {"total": train(model, opt, data, steps, lambda t: None)}


def run_torch_save(steps, data, workdir) -> dict:
    model, opt = make()
    train(model, opt, data, 2, lambda t: None)
    path = workdir / "torch_save.pt"

    def save(t):
        if t % INTERVAL == 0:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, path)
            fd = os.open(path, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)

    return {"total": train(model, opt, data, steps, save)}


def run_scar(steps, data, workdir) -> dict:
    model, opt = make()
    train(model, opt, data, 2, lambda t: None)
    store_dir = workdir / "scar"
    shutil.rmtree(store_dir, ignore_errors=True)
    ck = TorchCheckpointer(model, opt, DirectoryStore(store_dir), policy="priority", interval=INTERVAL, fraction=FRACTION)
    ck.wait()  # the initial full save is not part of the loop
    in_step = []

    def step(t):
        s = time.perf_counter()
        ck.step()
        in_step.append(time.perf_counter() - s)

    total = train(model, opt, data, steps, step)
    s = time.perf_counter()
    ck.wait()
    total += time.perf_counter() - s
    persists = list(ck._background.persists)
    snapshots = list(ck._background.snapshot_seconds)
    image = ck.checkpointer.image
    ck.close()
    return {"total": total, "in_step": sum(in_step), "persists": persists, "snapshots": snapshots, "image": image}


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
    ap.add_argument(
        "--steps", type=int, default=200, help="training steps per run (a multiple of C=100 amortizes whole intervals)"
    )
    ap.add_argument("--repeats", type=int, default=3, help="runs of each kind (medians printed)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--dir", default=None, help="directory on the disk to measure (default: a temp dir)")
    args = ap.parse_args()
    torch.set_num_threads(1)

    workdir = Path(tempfile.mkdtemp(prefix="scar-bench-torch-", dir=args.dir))
    warm_up(workdir)
    data = batches(8, args.batch)
    runs = {"plain": run_plain, "scar": run_scar, "torch.save": run_torch_save}
    results: dict[str, list[dict]] = {k: [] for k in runs}
    try:
        for rep in range(args.repeats):
            order = list(runs)[rep % 3 :] + list(runs)[: rep % 3]
            for name in order:
                results[name].append(runs[name](args.steps, data, workdir))
                print(f"  repeat {rep + 1} {name:<10s} {results[name][-1]['total']:7.2f} s", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    plain = statistics.median(r["total"] for r in results["plain"])
    n_params = sum(p.numel() for p in make()[0].parameters())
    print(
        f"\nMLP {'-'.join(map(str, DIMS))}: {n_params / 1e6:.2f} M parameters, Adam, batch {args.batch}, {args.steps} steps, "
        f"C = {INTERVAL}, priority r = {FRACTION}"
    )
    print(f"plain step time (median of {args.repeats} runs): {plain / args.steps * 1e3:.1f} ms")
    print(f"{'run':<12s} {'total s':>8s} {'overhead':>9s}   (amortized: (run - plain) / plain)")
    for name in runs:
        t = statistics.median(r["total"] for r in results[name])
        print(f"{name:<12s} {t:8.2f} {100 * (t - plain) / plain:8.2f}%")
    in_step = statistics.median(r["in_step"] for r in results["scar"])
    print(f"scar step() on the training thread: {in_step:.2f} s = {100 * in_step / plain:.2f}% of the plain run")

    last = results["scar"][-1]
    image = last["image"]
    names = list(image.values)
    params = sum(image.values[n].nbytes for n in names if "@" not in n)
    opt_rows = sum(image.values[n].nbytes for n in names if "@" in n and n != SCALARS)
    scalars = image.values[SCALARS].nbytes if SCALARS in image.values else 0
    print(
        f"\nbytes of a full save: parameters {params / 2**20:.1f} MiB, Adam rows {opt_rows / 2**20:.1f} MiB "
        f"({opt_rows / params:.1f}x), scalars {scalars} B"
    )
    full_bytes = params + opt_rows + scalars
    partial = [p for p in last["persists"] if p[1] < full_bytes]
    full = [p for p in last["persists"] if p[1] == full_bytes]  # the initial save (priority saves are partial)
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
    snap = statistics.median(last["snapshots"])
    print(f"snapshot on the training thread (median per save): {snap * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
