"""Training: datasets, models, Ray Train, MLflow."""
