"""Baselines and the causal transformer."""
