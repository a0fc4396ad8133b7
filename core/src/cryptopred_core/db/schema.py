"""The table contract: columns come from the record types, keys from docs/ARCHITECTURE.md."""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass

import msgspec

from cryptopred_core import tables
from cryptopred_core.db.rows import SourceWatermark, StreamCheckpoint, StreamPairState
from cryptopred_core.records import Candle, IndicatorRow, Prediction, PredictionOutcome

_PG_TYPES = {str: "TEXT", float: "DOUBLE PRECISION", int: "BIGINT", bool: "BOOLEAN"}
_RW_TYPES = {str: "VARCHAR", float: "DOUBLE PRECISION", int: "BIGINT", bool: "BOOLEAN"}


@dataclass(frozen=True)
class Column:
    name: str
    py_type: type
    nullable: bool

    def sql_type(self, dialect: str) -> str:
        return (_RW_TYPES if dialect == "risingwave" else _PG_TYPES)[self.py_type]


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


def _columns(kind: type[msgspec.Struct]) -> tuple[Column, ...]:
    hints = typing.get_type_hints(kind)
    out = []
    for name in kind.__struct_fields__:
        hint = hints[name]
        args = typing.get_args(hint)
        nullable = isinstance(hint, types.UnionType) and type(None) in args
        base = next((a for a in args if a is not type(None)), hint) if nullable else hint
        if typing.get_origin(base) is typing.Literal:
            base = str
        out.append(Column(name, base, nullable))
    return tuple(out)


_CANDLE_KEY = ("pair", "candle_seconds", "window_start_ms")
_PREDICTION_KEY = (
    "pair",
    "candle_seconds",
    "horizon_seconds",
    "window_end_ms",
    "model_name",
    "model_version",
)

TABLES: dict[str, Table] = {
    tables.CANDLES: Table(tables.CANDLES, _columns(Candle), _CANDLE_KEY),
    tables.TECHNICAL_INDICATORS: Table(
        tables.TECHNICAL_INDICATORS, _columns(IndicatorRow), _CANDLE_KEY
    ),
    tables.PREDICTIONS: Table(tables.PREDICTIONS, _columns(Prediction), _PREDICTION_KEY),
    tables.PREDICTION_OUTCOMES: Table(
        tables.PREDICTION_OUTCOMES, _columns(PredictionOutcome), _PREDICTION_KEY
    ),
    # internal: stage state saved with its offset (see cryptopred_core.pipeline.checkpoints)
    tables.STREAM_CHECKPOINTS: Table(
        tables.STREAM_CHECKPOINTS,
        _columns(StreamCheckpoint),
        ("group_id", "topic", "partition"),
    ),
    tables.STREAM_PAIR_STATES: Table(
        tables.STREAM_PAIR_STATES, _columns(StreamPairState), ("group_id", "topic", "pair")
    ),
    tables.SOURCE_WATERMARKS: Table(
        tables.SOURCE_WATERMARKS, _columns(SourceWatermark), ("source", "pair")
    ),
}

DIALECTS = ("postgres", "risingwave")


def check_dialect(dialect: str) -> None:
    """Raise ValueError for a dialect other than those of DIALECTS."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}; expected one of {DIALECTS}")


def app_written_tables(dialect: str) -> tuple[Table, ...]:
    """The tables whose rows the app writes (`cryptopred_core.db.upsert`) and creates if missing:
    every table of the contract, on both dialects. No table ingests a Kafka topic by itself (no
    RisingWave connector), so each has one writer: the stages read back what they wrote (the
    indicator stage its history, the publisher its predictions) before committing offsets,
    which a connector applying the topic later could not promise."""
    check_dialect(dialect)
    return tuple(TABLES.values())
