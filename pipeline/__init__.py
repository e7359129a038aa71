"""An MLflow-tracked, Optuna-searched pipeline for studying how small ConvNets learn."""

__version__ = "0.1.0"
