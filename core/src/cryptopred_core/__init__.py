"""The ground of the crypto price predictor: the contract (records, topics, tables, settings),
Kafka and DB access, the stage runtime, retry, supervision and the Ray cluster helpers."""
