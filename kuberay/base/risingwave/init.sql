-- RisingWave schema of cryptopred (dialect `risingwave`), run by the Job `risingwave-init`.
-- Generated from the table contract (cryptopred_core.db.schema.TABLES) by `make kuberay-init-sql`;
-- do not edit: a unit test fails while this file differs from the render.
-- Plain tables, no Kafka connector: the app is the one writer of every table (see
-- cryptopred_core.db.schema.app_written_tables); a repeated primary key overwrites the row (the
-- default ON CONFLICT OVERWRITE), so replays never duplicate. The stream job's entry point
-- creates the same tables if missing, so either may run first.

CREATE TABLE IF NOT EXISTS "candles" (
    "pair" VARCHAR NOT NULL,
    "candle_seconds" BIGINT NOT NULL,
    "window_start_ms" BIGINT NOT NULL,
    "window_end_ms" BIGINT NOT NULL,
    "open" DOUBLE PRECISION NOT NULL,
    "high" DOUBLE PRECISION NOT NULL,
    "low" DOUBLE PRECISION NOT NULL,
    "close" DOUBLE PRECISION NOT NULL,
    "volume" DOUBLE PRECISION NOT NULL,
    "vwap" DOUBLE PRECISION NOT NULL,
    "n_trades" BIGINT NOT NULL,
    "final" BOOLEAN NOT NULL,
    PRIMARY KEY ("pair", "candle_seconds", "window_start_ms")
);

CREATE TABLE IF NOT EXISTS "technical_indicators" (
    "pair" VARCHAR NOT NULL,
    "candle_seconds" BIGINT NOT NULL,
    "window_start_ms" BIGINT NOT NULL,
    "window_end_ms" BIGINT NOT NULL,
    "open" DOUBLE PRECISION NOT NULL,
    "high" DOUBLE PRECISION NOT NULL,
    "low" DOUBLE PRECISION NOT NULL,
    "close" DOUBLE PRECISION NOT NULL,
    "volume" DOUBLE PRECISION NOT NULL,
    "vwap" DOUBLE PRECISION NOT NULL,
    "n_trades" BIGINT NOT NULL,
    "final" BOOLEAN NOT NULL,
    "sma_7" DOUBLE PRECISION,
    "sma_14" DOUBLE PRECISION,
    "sma_21" DOUBLE PRECISION,
    "sma_60" DOUBLE PRECISION,
    "ema_7" DOUBLE PRECISION,
    "ema_14" DOUBLE PRECISION,
    "ema_21" DOUBLE PRECISION,
    "ema_60" DOUBLE PRECISION,
    "rsi_7" DOUBLE PRECISION,
    "rsi_14" DOUBLE PRECISION,
    "rsi_21" DOUBLE PRECISION,
    "rsi_60" DOUBLE PRECISION,
    "macd_7" DOUBLE PRECISION,
    "macdsignal_7" DOUBLE PRECISION,
    "macdhist_7" DOUBLE PRECISION,
    "obv" DOUBLE PRECISION,
    "atr_14" DOUBLE PRECISION,
    "adx_14" DOUBLE PRECISION,
    "bbands_upper_20" DOUBLE PRECISION,
    "bbands_middle_20" DOUBLE PRECISION,
    "bbands_lower_20" DOUBLE PRECISION,
    "mfi_14" DOUBLE PRECISION,
    PRIMARY KEY ("pair", "candle_seconds", "window_start_ms")
);

CREATE TABLE IF NOT EXISTS "predictions" (
    "pair" VARCHAR NOT NULL,
    "candle_seconds" BIGINT NOT NULL,
    "horizon_seconds" BIGINT NOT NULL,
    "window_end_ms" BIGINT NOT NULL,
    "target_ts_ms" BIGINT NOT NULL,
    "predicted_close" DOUBLE PRECISION NOT NULL,
    "predicted_return" DOUBLE PRECISION NOT NULL,
    "lower" DOUBLE PRECISION NOT NULL,
    "upper" DOUBLE PRECISION NOT NULL,
    "model_name" VARCHAR NOT NULL,
    "model_version" VARCHAR NOT NULL,
    "created_ms" BIGINT NOT NULL,
    PRIMARY KEY ("pair", "candle_seconds", "horizon_seconds", "window_end_ms", "model_name", "model_version")
);

CREATE TABLE IF NOT EXISTS "prediction_outcomes" (
    "pair" VARCHAR NOT NULL,
    "candle_seconds" BIGINT NOT NULL,
    "horizon_seconds" BIGINT NOT NULL,
    "window_end_ms" BIGINT NOT NULL,
    "model_name" VARCHAR NOT NULL,
    "model_version" VARCHAR NOT NULL,
    "target_ts_ms" BIGINT NOT NULL,
    "base_close" DOUBLE PRECISION NOT NULL,
    "predicted_close" DOUBLE PRECISION NOT NULL,
    "actual_close" DOUBLE PRECISION NOT NULL,
    "abs_error" DOUBLE PRECISION NOT NULL,
    "persistence_abs_error" DOUBLE PRECISION NOT NULL,
    "direction_hit" BOOLEAN NOT NULL,
    "interval_hit" BOOLEAN NOT NULL,
    "created_ms" BIGINT NOT NULL,
    "pinball_loss" DOUBLE PRECISION,
    "baseline_pinball_loss" DOUBLE PRECISION,
    "baseline_version" VARCHAR,
    PRIMARY KEY ("pair", "candle_seconds", "horizon_seconds", "window_end_ms", "model_name", "model_version")
);

CREATE TABLE IF NOT EXISTS "stream_checkpoints" (
    "group_id" VARCHAR NOT NULL,
    "topic" VARCHAR NOT NULL,
    "partition" BIGINT NOT NULL,
    "offset" BIGINT NOT NULL,
    "state" VARCHAR NOT NULL,
    "updated_ms" BIGINT NOT NULL,
    PRIMARY KEY ("group_id", "topic", "partition")
);

CREATE TABLE IF NOT EXISTS "stream_pair_states" (
    "group_id" VARCHAR NOT NULL,
    "topic" VARCHAR NOT NULL,
    "pair" VARCHAR NOT NULL,
    "partition" BIGINT NOT NULL,
    "state" VARCHAR NOT NULL,
    "updated_ms" BIGINT NOT NULL,
    PRIMARY KEY ("group_id", "topic", "pair")
);

CREATE TABLE IF NOT EXISTS "source_watermarks" (
    "source" VARCHAR NOT NULL,
    "pair" VARCHAR NOT NULL,
    "through_ms" BIGINT NOT NULL,
    "updated_ms" BIGINT NOT NULL,
    PRIMARY KEY ("source", "pair")
);
