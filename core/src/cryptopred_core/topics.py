"""Topic names; every topic is keyed as docs/ARCHITECTURE.md says (pair, or stage for `dlq`)."""

TRADES = "trades"
CANDLES = "candles"
TECHNICAL_INDICATORS = "technical_indicators"
PREDICTIONS = "predictions"
DLQ = "dlq"

ALL_TOPICS = (TRADES, CANDLES, TECHNICAL_INDICATORS, PREDICTIONS, DLQ)
