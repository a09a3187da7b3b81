from __future__ import annotations

import math

from scar.cli import main


def test_info_lists_models_datasets_and_strategies(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for word in ("mlr", "quadratic", "mnist", "covtype", "traditional", "(priority, partial)"):
        assert word in out


def test_bound_prints_the_formula_and_rejects_bad_c(capsys):
    assert main(["bound", "--delta", "0.1", "-T", "20", "--c", "0.98", "--initial-distance", "8"]) == 0
    expected = math.log(1 + 0.1 / (0.98**20 * 8)) / math.log(1 / 0.98)
    assert abs(float(capsys.readouterr().out) - expected) < 1e-4
    assert main(["bound", "--delta", "0.1", "-T", "20", "--c", "1.5", "--initial-distance", "8"]) == 2
    assert "contraction rate" in capsys.readouterr().err
