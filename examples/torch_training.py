"""A user's PyTorch training loop that loses 2 of its 8 parameter shards, with SCAR.

An MLP learns a random teacher network's labels with Adam. Its parameter rows (and their Adam
moments) are spread over 8 shards by a :class:`scar.torch.TorchCheckpointer`. At step
``--fail-at`` two shards are lost: their rows of the weights and of the optimizer state become
garbage. Two checkpoint strategies at the same I/O budget:

- **SCAR**: prioritized checkpoints (r = 1/4 of the rows, with their optimizer rows, every
  C/4 steps) and *partial* recovery: only the lost rows are restored, training goes on;
- **traditional**: a full checkpoint every C steps and a *full* rollback to it: every row is
  restored and the steps since are run again.

Each run trains until the objective (the training loss on a fixed 1,024 samples) reaches the loss the failure-free run has at step
``--target-step``; the extra steps are the run's optimizer steps beyond the failure-free run's.
Batches are drawn from the step number, so a rerun after a rollback sees the same batches (the
traditional run's extra steps are then exactly ``fail_at`` minus its last save).

Usage::

    python examples/torch_training.py [--fail-at 240] [--interval 100] [--target-step 500]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from scar.checkpoint.stores import DirectoryStore
from scar.torch import TorchCheckpointer

N_NODES, LOST = 8, (2, 5)


def make_data(n: int = 4096, dim: int = 32, classes: int = 10, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    teacher = [torch.randn(dim, 64, generator=g), torch.randn(64, classes, generator=g)]
    x = torch.randn(n, dim, generator=g)
    y = (torch.tanh(x @ teacher[0]) @ teacher[1]).argmax(1)
    return x, y, x[:1024], y[:1024]  # the objective is measured on a fixed 1,024 of the samples


def make_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(32, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)
    )


def train_step(model, opt, data, t: int) -> None:
    x, y, _, _ = data
    idx = torch.randint(0, len(x), (128,), generator=torch.Generator().manual_seed(t))  # the batch of step t
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
    opt.step()


@torch.no_grad()
def objective(model, data) -> float:
    _, _, xv, yv = data
    return float(torch.nn.functional.cross_entropy(model(xv), yv))


def lose_shards(model, opt, ck: TorchCheckpointer, nodes) -> int:
    """The lost shards' rows of the parameters and the Adam moments become garbage."""
    rows = ck.rows_on(nodes)
    g = torch.Generator().manual_seed(99)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.from_numpy(rows[name])
            for t in (p, opt.state[p]["exp_avg"], opt.state[p]["exp_avg_sq"]):
                view = t.view(t.shape[0] if t.dim() > 1 else 1, -1)
                view[r] = torch.randn(len(r), view.shape[1], generator=g).abs()
    return sum(len(r) for r in rows.values())


def run(data, target: float, *, policy: str, fraction: float, mode: str | None, args, path: Path) -> dict:
    """Train to ``target`` (a failure at ``args.fail_at`` unless ``mode`` is None); returns figures."""
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    ck = TorchCheckpointer(
        model, opt, DirectoryStore(path), policy=policy, interval=args.interval, fraction=fraction, n_nodes=N_NODES
    )
    ck.attach()  # ck.step() after every opt.step()
    steps, t, lost_rows = 0, 0, 0
    while objective(model, data) > target and steps < args.cap:
        t += 1
        train_step(model, opt, data, t)
        steps += 1
        if mode is not None and steps == args.fail_at:
            lost_rows = lose_shards(model, opt, ck, LOST)
            t = ck.recover(LOST, mode=mode)  # in place; full: back to the last save
    ck.close()
    return {"steps": steps, "lost_rows": lost_rows, "bytes": ck.bytes_written, "reached": steps < args.cap}


def main(argv: list[str] | None = None) -> dict[str, dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fail-at", type=int, default=240, help="step after which 2 of the 8 shards are lost")
    ap.add_argument("--interval", type=int, default=100, help="checkpoint interval C (steps)")
    ap.add_argument("--target-step", type=int, default=500, help="the loss target is the failure-free run's loss here")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--cap", type=int, default=3000, help="most steps a run may take")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # small matrices: more threads only contend

    data = make_data()
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    for t in range(1, args.target_step + 1):
        train_step(model, opt, data, t)
    target = objective(model, data)

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["failure-free"] = run(data, target, policy="priority", fraction=0.25, mode=None, args=args, path=Path(tmp, "a"))
        results["SCAR (priority r=1/4, partial)"] = run(
            data, target, policy="priority", fraction=0.25, mode="partial", args=args, path=Path(tmp, "b")
        )
        results["traditional (full, rollback)"] = run(
            data, target, policy="full", fraction=1.0, mode="full", args=args, path=Path(tmp, "c")
        )
    base = results["failure-free"]["steps"]
    print(
        f"loss target {target:.4f} (the failure-free loss at step {args.target_step}); lost shards {LOST} of {N_NODES} at step {args.fail_at}"
    )
    print(f"{'run':<32s} {'steps':>6s} {'extra':>6s} {'lost rows':>10s} {'checkpoint MiB':>15s}")
    for name, r in results.items():
        r["extra"] = r["steps"] - base
        steps = f"{r['steps']:6d}" if r["reached"] else f">{args.cap - 1:5d}"
        print(f"{name:<32s} {steps} {r['extra']:6d} {r['lost_rows']:10d} {r['bytes'] / 2**20:15.2f}")
    return results


if __name__ == "__main__":
    main()
