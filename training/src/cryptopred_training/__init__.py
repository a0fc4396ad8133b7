"""Training: datasets, models, Ray Train, MLflow.

Ray-free core: `dataset` (validation), `features` (features, targets, splits, Normalizer),
`models` (baselines, causal transformer), `steps` (train_step, eval_step, fit), `evaluation`
(metrics, walk-forward), `plots`, `promotion`, `predictor`, `synthetic`, `pipeline`.

The job: `settings` (TrainSettings), `source` (DB read), `ray_fit` (TorchTrainer),
`champion` (current champion on the new test split), `mlflow_model` (pyfunc), `tracking`
(MLflow run, registry, alias), `runner` (the whole job), `cli` / `job` (entry points).
"""
