"""Checkpoints: which rows are saved and when (policies), how they are written (codecs), where
they go (stores), and the Checkpointer that runs a policy over a training run (docs/design.md §4).
"""

from scar.checkpoint.checkpointer import Checkpointer, ServerStateAt, replay
from scar.checkpoint.codecs import CODECS, Codec, EncodedRows, RawCodec, make_codec
from scar.checkpoint.policies import (
    CHECKPOINT_POLICIES,
    CheckpointPolicy,
    FullCheckpoint,
    PriorityCheckpoint,
    RandomCheckpoint,
    RoundRobinCheckpoint,
    make_checkpoint_policy,
)
from scar.checkpoint.stores import (
    Checkpoint,
    CheckpointError,
    CheckpointStore,
    CorruptCheckpointError,
    DirectoryStore,
    InMemoryStore,
    MissingCheckpointError,
    RecordInfo,
)

__all__ = [
    "CHECKPOINT_POLICIES",
    "CODECS",
    "Checkpoint",
    "CheckpointError",
    "CheckpointPolicy",
    "CheckpointStore",
    "Checkpointer",
    "Codec",
    "CorruptCheckpointError",
    "DirectoryStore",
    "EncodedRows",
    "FullCheckpoint",
    "InMemoryStore",
    "MissingCheckpointError",
    "PriorityCheckpoint",
    "RandomCheckpoint",
    "RawCodec",
    "RecordInfo",
    "RoundRobinCheckpoint",
    "ServerStateAt",
    "make_checkpoint_policy",
    "make_codec",
    "replay",
]
