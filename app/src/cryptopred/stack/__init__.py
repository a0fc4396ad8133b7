"""The embedded local stack: tansu, PostgreSQL, MLflow and a Ray head, run as local processes."""
