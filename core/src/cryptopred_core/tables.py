"""Table names (docs/ARCHITECTURE.md); their columns live in `cryptopred_core.db.schema`."""

CANDLES = "candles"
TECHNICAL_INDICATORS = "technical_indicators"
PREDICTIONS = "predictions"
PREDICTION_OUTCOMES = "prediction_outcomes"

STREAM_CHECKPOINTS = "stream_checkpoints"  # internal: stage state with its offset
STREAM_PAIR_STATES = "stream_pair_states"  # internal: per-pair candle builder state
SOURCE_WATERMARKS = "source_watermarks"  # internal: how far a live source is complete

ALL_TABLES = (
    CANDLES,
    TECHNICAL_INDICATORS,
    PREDICTIONS,
    PREDICTION_OUTCOMES,
    STREAM_CHECKPOINTS,
    STREAM_PAIR_STATES,
    SOURCE_WATERMARKS,
)
