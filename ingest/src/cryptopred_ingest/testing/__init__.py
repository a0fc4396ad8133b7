"""Test helpers that ship with the package (fake exchange servers on loopback)."""
