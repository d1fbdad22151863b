"""Pure-torch batched local training and evaluation of many clients at once."""

from dp2fl_ray.engine.batched import (
    ClientData,
    EvalOutput,
    LocalTraining,
    TrainOutput,
    evaluate_pairs,
    train_clients,
)

__all__ = ["ClientData", "EvalOutput", "LocalTraining", "TrainOutput", "evaluate_pairs", "train_clients"]
