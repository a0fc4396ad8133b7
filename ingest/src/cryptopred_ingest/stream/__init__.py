"""Streaming stages (candles, indicators, DB sink): pure stage logic and the generic runner."""
