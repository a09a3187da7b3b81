"""The trial journal: what a killed trial-batch job has already finished."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from scar._atomic import atomic_write
from scar.stages.files import PathLike

log = logging.getLogger("scar")


class TrialProgress:
    """The finished trials of a batch job, kept while the job runs so that a killed job resumes
    without redoing them.

    A JSON-lines file next to the job's output (``<out>.progress``): a header naming what the
    rows depend on (model, hyperparameters, trial settings, the baseline file), then one line
    per finished trial, flushed and fsynced. A header that does not match (the config or the
    baseline changed) discards the file; a line cut short by a kill is ignored. The job removes
    the file once its output is written.
    """

    def __init__(self, path: PathLike, key: Mapping[str, Any]) -> None:
        self.path = Path(path)
        self.key = json.loads(json.dumps(key, default=_json_default))

    def load(self) -> dict[str, list[dict[str, Any]]]:
        """Rows of the finished trials, by trial key; rewrites the file to what was readable."""
        done: dict[str, list[dict[str, Any]]] = {}
        if self.path.is_file():
            lines = self.path.read_text().splitlines()
            try:
                header = json.loads(lines[0]) if lines else None
            except ValueError:
                header = None
            if header == {"key": self.key}:
                for line in lines[1:]:
                    try:
                        entry = json.loads(line)
                    except ValueError:  # cut short by a kill: everything before it is good
                        break
                    done[entry["trial"]] = entry["rows"]
            else:
                log.info("%s belongs to other settings or another baseline: starting afresh", self.path)
        with atomic_write(self.path, "w") as fh:
            fh.write(json.dumps({"key": self.key}) + "\n")
            for trial, rows in done.items():
                fh.write(self._line(trial, rows))
        return done

    def add(self, trial: str, rows: list[dict[str, Any]]) -> None:
        with open(self.path, "a") as fh:
            fh.write(self._line(trial, rows))
            fh.flush()
            os.fsync(fh.fileno())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    @staticmethod
    def _line(trial: str, rows: list[dict[str, Any]]) -> str:
        return json.dumps({"trial": trial, "rows": rows}, default=_json_default) + "\n"


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
