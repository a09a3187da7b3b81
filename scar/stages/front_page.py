"""Stage: the report's front page from the result tables (rule front_page)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from scar._atomic import atomic_write
from scar.stages.files import PathLike


def write_front_page(description: PathLike, headline: PathLike, verdicts: PathLike | None, out: PathLike) -> None:
    """The workflow's description followed by the headline results and the planner's verdicts."""
    from scar.report.front_page import front_page_rst

    text = front_page_rst(
        Path(description).read_text(),
        pd.read_csv(headline),
        pd.read_csv(verdicts) if verdicts else None,
    )
    with atomic_write(out, "w") as fh:
        fh.write(text)
