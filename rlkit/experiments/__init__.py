"""Experiments over runs: many seeds (`rlkit train --seeds`), reports over seeds, and
hyperparameter search (`rlkit tune`, on Optuna or Ray)."""
