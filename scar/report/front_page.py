"""The report's front page: the workflow's description followed by the headline results, as
reStructuredText written from the result tables (docs/design.md §8)."""

from __future__ import annotations

import pandas as pd


def _list_table(title: str, header: list[str], rows: list[list[str]]) -> list[str]:
    lines = [f".. list-table:: {title}", "   :header-rows: 1", ""]
    for row in [header, *rows]:
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {cell}" for cell in row[1:]]
    return [*lines, ""]


def _percent(x: float) -> str:
    return f"{100 * x:.0f}%"


def front_page_rst(description: str, headline: pd.DataFrame, verdicts: pd.DataFrame | None = None) -> str:
    """``description`` (the workflow's own text), then SCAR's rework reduction against traditional
    per experiment and failure fraction (``headline``, see :func:`scar.report.analysis.headline`)
    and, when given, the planner's verdicts (:func:`scar.planner.validation.planner_verdicts`)."""
    lines = [description.rstrip(), "", "Headline results", "----------------", ""]
    rows = [
        [
            f"{r.model} / {r.dataset}",
            f"{r.failure_fraction:g}",
            f"{r.rework_mean_traditional:.2f}",
            f"{r.rework_mean_scar:.2f}",
            f"{_percent(r.reduction)} [{_percent(r.reduction_ci_low)}, {_percent(r.reduction_ci_high)}]",
            f"{int(r.n_trials)}",
        ]
        for r in headline.itertuples(index=False)
    ]
    lines += _list_table(
        "Rework (iterations) after a failure: SCAR (priority checkpoints, partial recovery) against traditional",
        ["experiment", "failure fraction", "traditional", "SCAR", "reduction [95% CI]", "trials"],
        rows,
    )
    if verdicts is not None and len(verdicts):
        rows = []
        for (m, d), v in verdicts.groupby(["model", "dataset"], sort=False):
            by = v.set_index("pricing")
            row = [f"{m} / {d}", f"{by['cheapest'].iloc[0]} ({by['cheapest_cost'].iloc[0]:.1f})"]
            for pricing in ("calibrated", "bound"):
                if pricing not in by.index:
                    row.append("")
                    continue
                p = by.loc[pricing]
                verdict = "within" if bool(p["within_tolerance"]) else "outside"
                row.append(
                    f"{p['recommended']}: +{_percent(p['excess'])} [{_percent(p['excess_ci_low'])}, "
                    f"{_percent(p['excess_ci_high'])}], rank {int(p['simulated_rank'])} of {int(p['n_settings'])}, "
                    f"{verdict} {_percent(p['tolerance'])}"
                )
            rows.append(row)
        lines += _list_table(
            "Checkpoint planner: its recommendation's simulated cost over the cheapest simulated setting's",
            [
                "experiment",
                "cheapest simulated (cost)",
                "recommended, rework calibrated on the trials",
                "recommended, rework priced by the bound",
            ],
            rows,
        )
    return "\n".join(lines) + "\n"
