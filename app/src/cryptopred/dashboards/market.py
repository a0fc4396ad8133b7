"""Market: OHLC candles, volume and indicators of one pair and candle width."""

from __future__ import annotations

from cryptopred.dashboards.grafana import (
    Json,
    bars,
    candlestick,
    dashboard,
    field_stat,
    override,
    query_variable,
    row,
    sql,
    timeseries,
)
from cryptopred_core import tables

UID = "cryptopred-market"

PAIR = query_variable("pair", "Pair", f"SELECT DISTINCT pair FROM {tables.CANDLES} ORDER BY pair")
CANDLE_SECONDS = query_variable(
    "candle_seconds",
    "Candle (s)",
    f"SELECT DISTINCT candle_seconds FROM {tables.CANDLES} WHERE pair = '$pair' "
    "ORDER BY candle_seconds",
)

SERIES = "pair = '$pair' AND candle_seconds = $candle_seconds"
IN_RANGE = f"{SERIES} AND window_start_ms >= $__from AND window_start_ms < $__to"
RIGHT_AXIS = {"custom.axisPlacement": "right"}


def _indicators(columns: str) -> Json:
    return sql(
        f"""SELECT window_start_ms AS "time", {columns} FROM {tables.TECHNICAL_INDICATORS}
        WHERE {IN_RANGE} ORDER BY window_start_ms""",
        fmt="time_series",
    )


def _stats() -> list[Json]:
    last = f"""SELECT close FROM {tables.CANDLES} WHERE {SERIES} AND window_start_ms < $__to
        ORDER BY window_start_ms DESC LIMIT 1"""
    change = f"""SELECT 100.0 * (l.close - f.open) / f.open AS change_pct FROM
        (SELECT open FROM {tables.CANDLES} WHERE {IN_RANGE} ORDER BY window_start_ms LIMIT 1) AS f,
        (SELECT close FROM {tables.CANDLES} WHERE {IN_RANGE}
         ORDER BY window_start_ms DESC LIMIT 1) AS l"""
    totals = f"""SELECT sum(volume) AS volume, sum(n_trades) AS trades FROM {tables.CANDLES}
        WHERE {IN_RANGE}"""

    def one(title: str, query: str, field: str, unit: str, description: str = "") -> Json:
        return field_stat(title, sql(query), field, unit, description=description)

    return [
        one("Last close", last, "close", "none", "close of the newest candle in the range"),
        one("Change over the range", change, "change_pct", "percent"),
        one("Volume in the range", totals, "volume", "short"),
        one("Trades in the range", totals, "trades", "short"),
    ]


def build() -> Json:
    ohlc = sql(
        f"""SELECT window_start_ms AS "time", open, high, low, close, volume
        FROM {tables.CANDLES} WHERE {IN_RANGE} ORDER BY window_start_ms"""
    )
    trades = sql(
        f"""SELECT window_start_ms AS "time", n_trades AS trades, vwap FROM {tables.CANDLES}
        WHERE {IN_RANGE} ORDER BY window_start_ms""",
        fmt="time_series",
    )
    band = {"custom.fillBelowTo": "bbands_lower_20", "custom.fillOpacity": 10}
    panels = [
        row("Price"),
        *_stats(),
        candlestick(
            "OHLC and volume: $pair, ${candle_seconds} s",
            [ohlc],
            width=24,
            height=11,
            description="Event-time candles from the candles table; the newest may be open.",
        ),
        timeseries(
            "Close, SMA 21, EMA 21 and Bollinger bands (20, 2 sd)",
            [_indicators("close, sma_21, ema_21, bbands_upper_20, bbands_lower_20")],
            overrides=[override("bbands_upper_20", **band)],
        ),
        bars(
            "Trades per candle and VWAP",
            [trades],
            overrides=[override("vwap", **{"custom.drawStyle": "line", **RIGHT_AXIS})],
        ),
        row("Indicators"),
        timeseries(
            "RSI 7 / 14 / 21",
            [_indicators("rsi_7, rsi_14, rsi_21")],
            width=8,
            defaults={"min": 0, "max": 100},
        ),
        timeseries(
            "MACD (7, 21, 7)",
            [_indicators("macd_7, macdsignal_7, macdhist_7")],
            width=8,
            overrides=[override("macdhist_7", **{"custom.drawStyle": "bars"})],
        ),
        timeseries("ADX 14 and MFI 14", [_indicators("adx_14, mfi_14")], width=8),
        timeseries("ATR 14", [_indicators("atr_14")], width=12),
        timeseries("On-balance volume", [_indicators("obv")], width=12),
    ]
    return dashboard(
        UID,
        "cryptopred · Market",
        panels,
        variables=[PAIR, CANDLE_SECONDS],
        description="Candles and TA-Lib indicators per pair "
        "(tables candles, technical_indicators).",
    )
