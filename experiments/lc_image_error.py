"""How far is a codec's checkpoint image from the true state? MF (ALS) on MovieLens 100k.

Replays ``lc_partial`` (at 3 and 8 bits), ``scar`` and ``full_partial`` (C = 8, r = 1/4) up to
the saves before sweep 9 and prints, for the item factors ``V``, the distance of the image from
the true ``V`` of sweep 8 (the last save) and of sweep 9, next to the true change between sweeps
6 and 8 (what one save of every row every 2 sweeps must code).

Run: ``PYTHONPATH=. .venv/bin/python experiments/lc_image_error.py`` (seconds).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from scar.checkpoint.checkpointer import replay
from scar.checkpoint.strategy import get_strategy
from scar.datasets import load_dataset
from scar.measure.trajectory import run_baseline
from scar.models import make_model


def main(T: int = 9) -> None:
    model = make_model("mf", {"rank": 10, "l2": 0.05})
    data = model.prepare(load_dataset("movielens"))
    base = run_baseline(model, data, seed=0, max_iters=20, tol=0.01)
    x = base.server_state_at
    print(f"true ||V_8 - V_6|| = {np.linalg.norm(x(8)['V'] - x(6)['V']):.2f}")
    for name, bits in (("lc_partial", 3), ("lc_partial", 8), ("scar", None), ("full_partial", None)):
        s = get_strategy(name).with_r(0.25)
        if bits is not None:
            s = dataclasses.replace(s, codec_params=(("bits", bits),))
        ck = replay(s.policy(8), x, T, codec=s.make_codec())
        V = ck.image.values["V"]
        label = f"{name}" + (f" ({bits} bits)" if bits else "")
        print(
            f"{label:<22} ||image - V_8|| = {np.linalg.norm(V - x(8)['V']):6.2f}   ||image - V_9|| = "
            f"{np.linalg.norm(V - x(9)['V']):6.2f}   bytes {ck.bytes_written + ck.store.index_bytes_written}"
        )


if __name__ == "__main__":
    main()
