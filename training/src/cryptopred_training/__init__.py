"""Training: datasets, models, Ray Train, MLflow.

Ray-free core: `dataset` (validation), `features` (features, targets, splits, Normalizer),
`models` (baselines, causal transformer), `steps` (train_step, eval_step, fit), `evaluation`
(metrics, walk-forward), `plots`, `promotion`, `predictor`, `synthetic`, `flow` (prepare, fit,
score and decide).

The job: `settings` (TrainSettings), `source` (DB read), `ray_fit` (TorchTrainer),
`champion_scoring` (current champion on the new test split), `mlflow_model` (pyfunc model
logged from code, `pyfunc_code`), `model_card` (the card that makes a logged model data),
`registry` (registered versions loaded from card and state file), `tracking` (MLflow run,
registry, alias), `train_run` (the whole job), `cli` / `job` (entry points).
"""
