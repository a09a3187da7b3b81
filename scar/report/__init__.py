"""Aggregation of results into tables (:mod:`~scar.report.analysis`) and every figure
(:mod:`~scar.report.figures`)."""
