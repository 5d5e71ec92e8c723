"""digitexp: an ablation suite for digit detection (Faster R-CNN, MLflow, Optuna)."""

__version__ = "0.1.0"
