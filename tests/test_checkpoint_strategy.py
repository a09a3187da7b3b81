"""Tests of typed strategies (scar.checkpoint.strategy)."""

from __future__ import annotations

import pytest

from scar.checkpoint.strategy import DEFAULT_STRATEGIES, STRATEGIES, Strategy, get_strategy, resolve_strategies
from scar.core.recovery import RECOVERY_POLICIES


def test_strategies_table():
    assert STRATEGIES["traditional"] == Strategy("traditional", "full", "full")
    assert STRATEGIES["scar"] == Strategy("scar", "priority", "partial")
    assert STRATEGIES["full_partial"] == Strategy("full_partial", "full", "partial")
    assert STRATEGIES["round_robin_partial"] == Strategy("round_robin_partial", "round_robin", "partial")
    assert STRATEGIES["random_partial"] == Strategy("random_partial", "random", "partial")
    assert STRATEGIES["rebuild"] == Strategy("rebuild", "priority", "rebuild")
    assert STRATEGIES["frequency_partial"] == Strategy("frequency_partial", "frequency", "partial")
    assert STRATEGIES["lc_partial"] == Strategy("lc_partial", "priority", "partial", codec="lc", codec_params=(("bits", 3),))
    assert STRATEGIES["sensitive_partial"] == Strategy("sensitive_partial", "sensitive_priority", "partial")
    assert len(STRATEGIES) == 13
    for name, s in STRATEGIES.items():
        assert s.name == name
        assert s.recovery in RECOVERY_POLICIES
        assert s.fractional == (s.checkpoint != "full")
        assert get_strategy(name) is s
    assert not STRATEGIES["traditional"].fractional and STRATEGIES["scar"].fractional


def test_unknown_strategy_is_named():
    with pytest.raises(ValueError, match="unknown strategy 'scar2'"):
        get_strategy("scar2")


def test_resolve_expands_fractional_strategies_over_r_and_keeps_full_ones_once():
    got = resolve_strategies(["traditional", "scar", "round_robin_partial"], [0.5, 0.25], interval=8)
    assert [(s.name, s.r) for s in got] == [
        ("traditional", 1.0), ("scar", 0.5), ("scar", 0.25), ("round_robin_partial", 0.5), ("round_robin_partial", 0.25),
    ]  # fmt: skip
    assert got[1].policy(8).save_every == 4


def test_resolve_names_what_is_wrong():
    with pytest.raises(ValueError, match="unknown strategy 'nope'"):
        resolve_strategies(["nope"], [0.25])
    with pytest.raises(ValueError, match="r \\* C must be a whole number"):
        resolve_strategies(["scar"], [0.3], interval=8)
    with pytest.raises(ValueError, match="listed twice"):
        resolve_strategies(["scar", "scar"], [0.25])
    with pytest.raises(ValueError, match="at least one strategy"):
        resolve_strategies([], [0.25])


def test_a_strategy_checks_its_own_fields():
    with pytest.raises(ValueError, match="unknown checkpoint policy"):
        Strategy("x", "hourly", "partial")
    with pytest.raises(ValueError, match="unknown recovery policy"):
        Strategy("x", "full", "rollback")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="r is always 1"):
        Strategy("x", "full", "full", r=0.5)
    with pytest.raises(ValueError, match=r"r must be in \(0, 1\]"):
        Strategy("x", "priority", "partial", r=0.0)
    assert get_strategy("traditional").with_r(0.25).r == 1.0


def test_default_strategies_are_the_raw_ones_and_codecs_are_additive():
    assert DEFAULT_STRATEGIES == ("traditional", "scar", "full_partial", "round_robin_partial", "random_partial", "rebuild")
    assert all(STRATEGIES[n].codec == "raw" and STRATEGIES[n].codec_params == () for n in DEFAULT_STRATEGIES)
    lc = STRATEGIES["lc_partial"].with_r(0.25)
    assert lc.make_codec().params() == {"bits": 3} and lc.policy(8).codec.name == "lc"
    assert lc.policy(8).budget_in_bytes and not STRATEGIES["scar"].policy(8).budget_in_bytes


def test_a_strategy_checks_its_codec():
    with pytest.raises(ValueError, match="unknown codec 'zstd'"):
        Strategy("x", "priority", "partial", codec="zstd")
    with pytest.raises(ValueError, match="bits must be an integer"):
        Strategy("x", "priority", "partial", codec="lc", codec_params=(("bits", 12),))
    with pytest.raises(ValueError, match="whole-job.*lossless"):
        Strategy("x", "full", "full", codec="quantized")
    assert Strategy("x", "full", "full", codec="delta").whole_job
