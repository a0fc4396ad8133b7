"""Root conftest: makes the shared real-service fixtures available to every member's tests."""

pytest_plugins = ["cryptopred.testing.fixtures"]
