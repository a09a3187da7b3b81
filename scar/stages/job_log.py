"""Logging of a workflow job: to its rule's log file and to stderr, uncaught errors included."""

from __future__ import annotations

import logging
import os
import platform
import sys
from pathlib import Path

from scar.stages.files import PathLike

log = logging.getLogger("scar")


def setup_logging(log_file: PathLike | None = None) -> None:
    """Log the package's messages to ``log_file`` (a rule's log) and to stderr, and log any
    uncaught exception's traceback there too: Snakemake points users at the log when a job
    fails, and on a cluster node the log is all they have."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True
    )
    # Where the job ran: on a cluster, the SLURM job to look up (sacct, seff) when it misbehaves.
    slurm_job = os.environ.get("SLURM_JOB_ID")
    log.info(
        "job on host %s, pid %d, %s",
        platform.node(),
        os.getpid(),
        f"SLURM_JOB_ID={slurm_job}" if slurm_job else "not a SLURM job",
    )

    def log_uncaught(exc_type, exc, tb) -> None:
        log.critical("job failed", exc_info=(exc_type, exc, tb))
        logging.shutdown()

    sys.excepthook = log_uncaught
