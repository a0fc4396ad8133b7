"""`cryptopred demo`: the whole system on the embedded stack, from trades to served forecasts."""
