"""The backtest engine against hand arithmetic and an independent bar-by-bar loop."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clm_assets.backtest.engine import TRADE_COLUMNS, BacktestError, run_backtest

C = 0.001  # 10 bps


def _times(n: int) -> pd.DatetimeIndex:
    return pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")


def reference_loop(open_, close, position, fee_bps, slippage_bps, long_only):
    """Units and cash, one bar at a time, one Python float at a time.

    At each open the holding is traded to the target: the units whose notional is the
    target fraction of the equity left after paying for the order (found by fixed-point
    iteration, not by the engine's closed form), costing ``c * |Δunits| * open``. A trade
    that ends (to flat or through a sign flip) sells the whole holding first. Equity is
    marked to each close; between fills the holding is a number of units, so a short or a
    fractional long drifts away from its target and the next open pays to trade it back.
    """
    c = (fee_bps + slippage_bps) / 10_000.0
    w = [min(max(p, 0.0), 1.0) if long_only else p for p in position]
    units, cash, equity_close = 0.0, 1.0, 1.0
    rows, trades = [], []
    trade = None
    for k in range(1, len(open_)):
        o, cl, target = open_[k], close[k], w[k - 1]
        equity_open = cash + units * o
        side = (target > 0) - (target < 0)
        traded = 0.0
        if trade is not None and side != trade["side"]:  # exit: sell the whole holding
            traded += abs(units) * o
            cash += units * o - c * abs(units) * o
            units = 0.0
            trade["growth"] = cash / trade["start"]
            trade["exit"] = k
            trades.append(trade)
            trade = None
        equity_now = cash + units * o
        if trade is None and side != 0:
            trade = {"side": side, "entry": k, "exit": None, "bars": 0, "start": equity_now}
        new_units = target * equity_now / o
        for _ in range(100):  # a contraction (factor c * |target| < 1): a few steps suffice
            nxt = target * (equity_now - c * abs(new_units - units) * o) / o
            if nxt == new_units:
                break
            new_units = nxt
        traded += abs(new_units - units) * o
        cash -= (new_units - units) * o + c * abs(new_units - units) * o
        units = new_units
        new_close = cash + units * cl
        cost = c * traded / equity_open
        net = new_close / equity_close - 1.0
        gross = (1.0 + net) / (1.0 - cost) - 1.0
        if trade is not None:
            trade["bars"] += 1
        rows.append((target, gross, cost, net, new_close, traded / equity_open))
        equity_close = new_close
    if trade is not None:
        trade["growth"] = equity_close / trade["start"]
        trades.append(trade)
    return np.array(rows).reshape(-1, 6), trades


def _assert_matches_loop(o, cl, pos, fee, slip, long_only):
    result = run_backtest(
        _times(len(o)), o, cl, pos, fee_bps=fee, slippage_bps=slip, long_only=long_only
    )
    rows, trades = reference_loop(
        *(np.asarray(x, dtype=float).tolist() for x in (o, cl, pos)), fee, slip, long_only
    )
    names = ("position", "gross_returns", "costs", "returns", "equity", "turnover")
    for col, name in enumerate(names):
        np.testing.assert_allclose(getattr(result, name), rows[:, col], rtol=0, atol=1e-12)
    t = result.trades
    assert len(t) == len(trades)
    out_time = result.open_time
    for got, want in zip(t.itertuples(index=False), trades, strict=True):
        assert got.entry_time == out_time[want["entry"] - 1]
        assert got.side == want["side"]
        assert got.bars == want["bars"]
        assert got.is_open == (want["exit"] is None)
        if want["exit"] is None:
            assert pd.isna(got.exit_time)
        else:
            assert got.exit_time == out_time[want["exit"] - 1]
        assert abs(got[4] - (want["growth"] - 1.0)) <= 1e-12
    # flat bars contribute a factor of exactly 1: the equity is the product of the trades
    assert abs(result.equity[-1] - np.prod(1.0 + t["return"].to_numpy())) <= 1e-12
    # costs compound: (1 + net) = (1 + gross) * (1 - cost)
    np.testing.assert_allclose(
        1.0 + result.returns, (1.0 + result.gross_returns) * (1.0 - result.costs), atol=1e-14
    )
    return result


def test_hand_computed_six_bars():
    # bar:       0      1      2      3      4      5
    o = np.array([100.0, 101.0, 104.0, 102.0, 99.0, 102.0])
    cl = np.array([100.0, 102.0, 103.0, 100.0, 101.0, 103.0])
    pos = np.array([1.0, 1.0, -1.0, 0.0, 0.5, 1.0])  # decided at each close
    r = run_backtest(_times(6), o, cl, pos, fee_bps=10.0)
    assert r.n_bars == 5
    assert list(r.open_time) == list(_times(6)[1:])
    np.testing.assert_array_equal(r.position, [1.0, 1.0, -1.0, 0.0, 0.5])
    assert r.pending_position == 1.0  # decided at the close of bar 5, filled at bar 6
    # bar 1: flat -> long 1 at open 101: all the equity buys units and pays for itself,
    #   notional 1 / (1 + C), cost C / (1 + C); held to close 102: gross = 102/101 - 1
    # bar 2: long 1 -> 1 (a full long does not drift), gap 102 -> 104 then 104 -> 103:
    #   gross = net = 103/102 - 1
    # bar 3: long 1 -> short 1: sell the holding (C), then short 1 of what is left, notional
    #   (1 - C) / (1 + C); cost 1 - (1 - C) / (1 + C) = 2C / (1 + C)
    #   gap at +1: 102/103; open->close at -1: 1 - (100/102 - 1) = 104/102
    #   gross = 102/103 * 104/102 - 1 = 104/103 - 1
    # bar 4: the short of 1 set at open 102 is worth 1 - (100/102 - 1) = 104/102 of that
    #   equity at close 100 and 2 - 99/102 = 105/102 at open 99 (its fraction drifted to
    #   -99/105): gross = 105/104 - 1, buying it back costs C * 99/105
    # bar 5: flat -> long 0.5 at open 102: notional 0.5 / (1 + C/2), cost (C/2) / (1 + C/2)
    #   gross = 0.5 * (103/102 - 1) = 0.5/102
    gross = np.array([102 / 101 - 1, 103 / 102 - 1, 104 / 103 - 1, 105 / 104 - 1, 0.5 / 102])
    cost = np.array([C / (1 + C), 0.0, 2 * C / (1 + C), C * 99 / 105, (C / 2) / (1 + C / 2)])
    net = (1 + gross) * (1 - cost) - 1
    np.testing.assert_allclose(r.gross_returns, gross, rtol=0, atol=1e-15)
    np.testing.assert_allclose(r.costs, cost, rtol=0, atol=1e-15)
    np.testing.assert_allclose(r.returns, net, rtol=0, atol=1e-15)
    np.testing.assert_allclose(r.equity, np.cumprod(1 + net), rtol=0, atol=1e-15)
    np.testing.assert_allclose(r.turnover, cost / C, rtol=0, atol=1e-12)

    t = r.trades
    assert list(t.columns) == list(TRADE_COLUMNS)
    assert t["side"].tolist() == [1, -1, 1]
    assert t["bars"].tolist() == [2, 1, 1]
    assert t["is_open"].tolist() == [False, False, True]
    times = _times(6)
    assert t["entry_time"].tolist() == [times[1], times[3], times[5]]
    assert t["exit_time"].iloc[0] == times[3] and t["exit_time"].iloc[1] == times[4]
    assert pd.isna(t["exit_time"].iloc[2])
    # long: in at open 101 (1 / (1 + C)), out at open 102 (1 - C): 102/101 * (1-C)/(1+C) - 1
    # short: 104/102 at close 100, 105/102 at open 99, in 1 / (1 + C), out 1 - C * 99/105
    # open long 0.5: its entry fee and bar 5 only
    want = [
        102 / 101 * (1 - C) / (1 + C) - 1,
        105 / 102 * (1 - C * 99 / 105) / (1 + C) - 1,
        net[4],
    ]
    np.testing.assert_allclose(t["return"], want, rtol=0, atol=1e-15)
    _assert_matches_loop(o, cl, pos, 10.0, 0.0, False)


def test_trade_list_on_known_sequence():
    n = 10
    price = np.full(n, 100.0)  # constant prices: trade returns are pure costs
    pos = [0, 1, 1, 0.5, -1, -1, 0, 0, 1, 1]
    r = run_backtest(_times(n), price, price, pos, fee_bps=7.0, slippage_bps=3.0)
    times = r.open_time  # result bars 1..9 hold pos[0..8]
    t = r.trades
    assert t["side"].tolist() == [1, -1, 1]
    assert t["bars"].tolist() == [3, 2, 1]
    assert t["entry_time"].tolist() == [times[1], times[4], times[8]]
    assert t["exit_time"].iloc[0] == times[4]  # flip at the open of result bar 5
    assert t["exit_time"].iloc[1] == times[6]  # flat at the open of result bar 7
    assert t["is_open"].tolist() == [False, False, True]
    # long: buy a notional u = 1 / (1 + C) paying C * u, sell it (half at the resize, half
    # at the flip) paying C * u again: 1 - 2C / (1 + C) = (1 - C) / (1 + C); the same for
    # the short; the open long has paid its entry only
    want = [(1 - C) / (1 + C) - 1, (1 - C) / (1 + C) - 1, 1 / (1 + C) - 1]
    np.testing.assert_allclose(t["return"], want, rtol=0, atol=1e-15)
    assert r.equity[-1] == pytest.approx(np.prod(1 + np.array(want)), abs=1e-15)
    assert r.pending_position == 1.0


def test_buy_and_hold_is_close_to_close_after_entry():
    rng = np.random.default_rng(3)
    n = 500
    cl = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    o = cl * np.exp(rng.normal(0, 0.001, n))  # opens gap away from the previous close
    r = run_backtest(_times(n), o, cl, np.ones(n), fee_bps=10.0)
    np.testing.assert_allclose(r.gross_returns[1:], cl[2:] / cl[1:-1] - 1, atol=1e-14)
    assert r.equity[-1] == pytest.approx(cl[-1] / o[1] / (1 + C), rel=1e-12)
    np.testing.assert_array_equal(r.costs[1:], 0.0)  # nothing to rebalance
    assert len(r.trades) == 1 and bool(r.trades["is_open"].iloc[0])


@pytest.mark.parametrize("target", [0.5, -0.5, -1.0])
def test_drifted_position_pays_to_return_to_its_target(target):
    # bar 1 holds the target from open 100 to close 110; bar 2 opens at 110 and holds the
    # same target again: the holding drifted to f = target * 1.1 / (1 + target * 0.1)
    # and trading it back costs C * |f - target| on that notional (over 1 -/+ C * target).
    o, cl = np.array([100.0, 100.0, 110.0]), np.array([100.0, 110.0, 110.0])
    r = run_backtest(_times(3), o, cl, [target] * 3, fee_bps=10.0)
    drifted = target * 1.1 / (1 + target * 0.1)
    sign = 1.0 if target > drifted else -1.0
    want = C * abs(drifted - target) / (1 + sign * C * target)
    assert r.costs[1] == pytest.approx(want, rel=1e-12)
    assert r.costs[1] > 1e-5
    assert r.turnover[1] == pytest.approx(abs(drifted - target) / (1 + sign * C * target))
    _assert_matches_loop(o, cl, [target] * 3, 10.0, 0.0, False)


prices = st.lists(st.floats(-0.05, 0.05), min_size=2, max_size=120)


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    log_moves=prices,
    fee=st.floats(0.0, 50.0),
    slip=st.floats(0.0, 20.0),
    long_only=st.booleans(),
)
def test_matches_bar_by_bar_loop(data, log_moves, fee, slip, long_only):
    n = len(log_moves)
    cl = 100.0 * np.exp(np.cumsum(log_moves))
    gaps = data.draw(st.lists(st.floats(-0.01, 0.01), min_size=n, max_size=n))
    o = np.concatenate(([100.0], cl[:-1])) * np.exp(gaps)
    level = st.one_of(st.sampled_from([-1.0, -0.5, 0.0, 0.0, 0.5, 1.0]), st.floats(-1.0, 1.0))
    pos = np.array(data.draw(st.lists(level, min_size=n, max_size=n)))
    _assert_matches_loop(o, cl, pos, fee, slip, long_only)


def test_prefix_runs_equal_the_start_of_the_full_run():
    rng = np.random.default_rng(7)
    n = 400
    cl = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    o = np.concatenate(([100.0], cl[:-1])) * np.exp(rng.normal(0, 0.002, n))
    pos = np.round(rng.uniform(-1, 1, n) * 2) / 2  # runs of equal positions
    times = _times(n)
    full = run_backtest(times, o, cl, pos, fee_bps=10.0, slippage_bps=2.0)
    for k in (2, 3, 17, 200, 399, 400):
        part = run_backtest(times[:k], o[:k], cl[:k], pos[:k], fee_bps=10.0, slippage_bps=2.0)
        for name in ("position", "gross_returns", "costs", "returns", "equity", "turnover"):
            np.testing.assert_array_equal(getattr(part, name), getattr(full, name)[: k - 1])
        assert part.open_time.equals(full.open_time[: k - 1])
        assert part.pending_position == pos[k - 1]
        closed = part.trades[~part.trades["is_open"]]
        pd.testing.assert_frame_equal(closed, full.trades.iloc[: len(closed)])
        if len(closed) < len(part.trades):  # the open trade started where the full one did
            assert part.trades["entry_time"].iloc[-1] == full.trades["entry_time"].iloc[len(closed)]


def test_long_only_clips_shorts_to_flat():
    rng = np.random.default_rng(11)
    n = 300
    cl = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    o = np.concatenate(([100.0], cl[:-1]))
    pos = rng.uniform(-1, 1, n)
    lo = run_backtest(_times(n), o, cl, pos, long_only=True)
    clipped = run_backtest(_times(n), o, cl, np.clip(pos, 0, 1))
    assert lo.position.min() >= 0 and (lo.position == 0).sum() > 100
    np.testing.assert_array_equal(lo.returns, clipped.returns)
    np.testing.assert_array_equal(lo.position, np.clip(pos[:-1], 0, 1))
    assert set(lo.trades["side"]) == {1}
    assert lo.long_only


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_position_raises(bad):
    pos = np.array([0.0, 1.0, bad, 1.0])
    price = np.full(4, 100.0)
    with pytest.raises(BacktestError, match="index 2"):
        run_backtest(_times(4), price, price, pos)
    with pytest.raises(BacktestError):  # not rescued by long_only either
        run_backtest(_times(4), price, price, pos, long_only=True)


@pytest.mark.parametrize(
    ("times", "o", "cl", "pos", "kw", "match"),
    [
        (_times(1), [1.0], [1.0], [0.0], {}, "at least 2"),
        (_times(3), [1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [0.0, 1.5, 0.0], {}, r"\[-1, 1\]"),
        (_times(3)[::-1], [1.0] * 3, [1.0] * 3, [0.0] * 3, {}, "increasing"),
        (_times(3), [1.0, 0.0, 1.0], [1.0] * 3, [0.0] * 3, {}, "open must be"),
        (_times(3), [1.0] * 3, [1.0, math.nan, 1.0], [0.0] * 3, {}, "close must be"),
        (_times(3), [1.0] * 3, [1.0] * 3, [0.0] * 2, {}, "position has 2"),
        (_times(3), [1.0] * 3, [1.0] * 3, [0.0] * 3, {"fee_bps": -1.0}, "fee_bps"),
        (_times(3), [1.0] * 3, [1.0] * 3, [0.0] * 3, {"slippage_bps": 1e4}, "< 10000"),
    ],
)
def test_invalid_inputs_raise(times, o, cl, pos, kw, match):
    with pytest.raises(BacktestError, match=match):
        run_backtest(times, o, cl, pos, **kw)


def test_short_through_a_price_that_triples_is_an_error_not_a_number():
    # short 1 from open 100 to close 300: the equity is gone (1 - 2 = -1) at that close
    o, cl = [100.0, 100.0, 300.0], [100.0, 300.0, 300.0]
    with pytest.raises(
        BacktestError, match="lost all the equity by the close: 1 bars, first at index 1"
    ):
        run_backtest(_times(3), o, cl, [-1.0, -1.0, -1.0])


def test_two_bars_is_the_minimum():
    r = run_backtest(_times(2), [100.0, 100.0], [100.0, 110.0], [1.0, 0.0], fee_bps=0.0)
    assert r.n_bars == 1
    np.testing.assert_allclose(r.returns, [0.1], rtol=1e-15)
    assert r.trades["is_open"].tolist() == [True]
    frame = r.to_frame()
    assert list(frame.columns[:3]) == ["open_time", "position", "gross_return"]
    assert len(frame) == 1
