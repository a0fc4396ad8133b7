"""Training: datasets, models, Ray Train, MLflow.

Ray-free core: `dataset` (validation), `features` (features, targets, splits, Normalizer),
`models` (baselines, causal transformer), `steps` (train_step, eval_step, fit), `evaluation`
(metrics, walk-forward), `plots`, `promotion`, `predictor`, `synthetic`, `pipeline`.
"""
