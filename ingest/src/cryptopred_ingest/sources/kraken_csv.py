"""Kraken's downloadable time-and-sales CSV: `unix_seconds,price,volume`, no header."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from cryptopred_core.records import MAX_TS_MS, MIN_TS_MS, Trade
from cryptopred_ingest.publish import Batch, Reject, encode_trade_columns
from cryptopred_ingest.sources.ids import TickIds

SOURCE = "kraken-csv"
CHUNK_ROWS = 100_000


class CsvTrades:
    """Reads one pair's CSV in chunks; bad rows become Rejects with the raw line.

    Side is not in the file, so it follows the tick rule (uptick buy, downtick sell, unchanged
    repeats the previous side); trade ids come from `TickIds`. Both are deterministic.
    """

    def __init__(
        self, path: Path, pair: str, chunk_rows: int = CHUNK_ROWS, columnar: bool = False
    ) -> None:
        self.path = path
        self.pair = pair
        self.chunk_rows = chunk_rows
        self.columnar = columnar  # yield pre-encoded JSON instead of Trade objects
        self._ids = TickIds()
        self._last_price = float("nan")
        self._last_side = 1.0

    def batches(self) -> Iterator[Batch]:
        with self.path.open("r", encoding="utf-8", errors="replace") as handle:
            while True:
                lines = list(itertools.islice(handle, self.chunk_rows))
                if not lines:
                    return
                yield self.parse_lines(lines)

    def parse_lines(self, lines: list[str]) -> Batch:
        """A chunk: pandas' C parser when every row is clean numbers, else row by row."""
        try:
            table = pd.read_csv(
                io.StringIO("".join(lines)),
                header=None,
                names=("t", "p", "q"),
                dtype=np.float64,
                engine="c",
            ).to_numpy()
        except (ValueError, pd.errors.ParserError):
            return self._parse_rows(lines)
        if table.shape[1] != 3 or np.isnan(table).any():
            return self._parse_rows(lines)  # short rows or NaN: find them with reasons
        ts_s, price, qty = table[:, 0], table[:, 1], table[:, 2]
        ts_ms = np.floor(ts_s * 1000.0)
        good = np.isfinite(table).all(axis=1) & (price > 0) & (qty > 0)
        good &= (ts_ms >= MIN_TS_MS) & (ts_ms < MAX_TS_MS)
        if not good.all():
            return self._parse_rows(lines)
        return self._emit(Batch(), ts_s, price, qty)

    def _parse_rows(self, lines: list[str]) -> Batch:
        batch = Batch()
        raws: list[str] = []
        cols: list[list[str]] = []
        for line in lines:
            raw = line.rstrip("\r\n")
            if not raw.strip():
                continue
            parts = raw.split(",")
            if len(parts) != 3:
                batch.rejects.append(Reject(f"csv: expected 3 columns, got {len(parts)}", raw))
                continue
            raws.append(raw)
            cols.append(parts)
        if not cols:
            return batch
        table = np.array(cols, dtype=object)
        ts_s = _numbers(table[:, 0])
        price = _numbers(table[:, 1])
        qty = _numbers(table[:, 2])
        with np.errstate(invalid="ignore", over="ignore"):
            ts_ms = np.floor(ts_s * 1000.0)
        reasons = np.full(len(raws), "", dtype=object)
        reasons[~(np.isfinite(qty) & (qty > 0))] = "qty: must be a finite number > 0"
        reasons[~(np.isfinite(price) & (price > 0))] = "price: must be a finite number > 0"
        bad_ts = ~(np.isfinite(ts_ms) & (ts_ms >= MIN_TS_MS) & (ts_ms < MAX_TS_MS))
        reasons[bad_ts] = "ts_ms: absurd or unparseable timestamp"
        good = reasons == ""
        for i in np.flatnonzero(~good):
            batch.rejects.append(Reject(str(reasons[i]), raws[i]))
        return self._emit(batch, ts_s[good], price[good], qty[good])

    def _emit(
        self,
        batch: Batch,
        ts_s: npt.NDArray[np.float64],
        price: npt.NDArray[np.float64],
        qty: npt.NDArray[np.float64],
    ) -> Batch:
        if len(price) == 0:
            return batch
        ticks = np.round(ts_s * 10_000.0).astype(np.int64)
        ids = self._ids.assign(ticks)
        step = np.sign(np.diff(np.concatenate(([self._last_price], price))))
        step[~np.isfinite(step)] = 0.0
        sides = pd.Series(step).replace(0.0, np.nan).ffill().fillna(self._last_side).to_numpy()
        self._last_price = float(price[-1])
        self._last_side = float(sides[-1])
        ts_list = (ticks // 10).tolist()
        pair = self.pair
        if self.columnar:
            batch.encoded_key = pair.encode()
            batch.encoded = encode_trade_columns(
                pair,
                price.tolist(),
                qty.tolist(),
                (sides > 0).tolist(),
                ids.tolist(),
                ts_list,
                SOURCE,
            )
            return batch
        batch.trades = [
            Trade(
                pair=pair,
                price=p,
                qty=q,
                side="buy" if s > 0 else "sell",
                trade_id=i,
                ts_ms=t,
                source=SOURCE,
            )
            for p, q, s, i, t in zip(
                price.tolist(), qty.tolist(), sides.tolist(), ids.tolist(), ts_list, strict=True
            )
        ]
        return batch


def _numbers(column: npt.NDArray[np.object_]) -> npt.NDArray[np.float64]:
    values = pd.to_numeric(pd.Series(column).str.strip(), errors="coerce")
    result: npt.NDArray[np.float64] = values.to_numpy(dtype=np.float64, na_value=np.nan)
    return result
