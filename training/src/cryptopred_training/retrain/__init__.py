"""Scheduled retraining: the schedule (pure), the run history in MLflow, the scheduler actor."""
