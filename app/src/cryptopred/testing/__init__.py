"""Pytest fixtures that start real services once per test session (loaded by the root conftest)."""
