"""Shared contract and platform for the crypto price predictor."""
