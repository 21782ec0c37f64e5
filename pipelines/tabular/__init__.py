"""Competitions from a spec file, tabular kind: a YAML file names the id, the target, the task, the
metric and the submission format (spec.py); the engine reads Kaggle's CSVs with checks (data.py),
fits preprocessing inside each fold (preprocess.py), trains a registered model family per fold
(models.py: linear, lightgbm, mlp; configs in configs/tabular/) with the shared k-fold engine, and
writes validated submissions (task.py). cli.SpecVerbs(spec) holds the verbs for a registry.
"""
