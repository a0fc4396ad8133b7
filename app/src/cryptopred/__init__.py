"""The roof of the crypto price predictor: the `cryptopred` CLI, the demo, the embedded stack,
the dashboards and the settings table."""
