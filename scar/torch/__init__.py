"""SCAR in a PyTorch training loop: prioritized checkpoints of an ``nn.Module`` and its optimizer,
partial recovery of lost shards (docs/design.md §12).

The adapter imports :mod:`scar.checkpoint` and :mod:`scar.core`; neither imports torch.
"""

from scar.torch.checkpointer import TorchCheckpointer
from scar.torch.persist import BackgroundStore, PersistError
from scar.torch.policy import RowGroupPolicy
from scar.torch.state import SCALARS, ModelArrays

__all__ = ["SCALARS", "BackgroundStore", "ModelArrays", "PersistError", "RowGroupPolicy", "TorchCheckpointer"]
