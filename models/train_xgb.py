"""Train an XGBoost model for the trainer service (model type "xgboost").

Started by the supervisor as ``/usr/bin/python3 models/train_xgb.py``; the
whole contract (environment, protocol lines, files written) is documented in
_trainer_job / _trainer_common.  Progress: one step per boosting round, with
the training-set loss xgboost evaluates after that round.
"""
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts (that directory may hold models)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import xgboost  # noqa: E402  (needs the path above for the helpers, not for xgboost)

from _trainer_common import integer, number  # noqa: E402
from _trainer_job import run  # noqa: E402

HYPERPARAMETERS = {
    "n_estimators": (integer(1, 5000), 100),
    "learning_rate": (number(1e-6, 1), 0.1),
    "max_depth": (integer(1, 20), 6),
    "subsample": (number(1e-6, 1), 1.0),
    "colsample_bytree": (number(1e-6, 1), 1.0),
    "min_child_weight": (number(0, 1e6), 1.0),
    "reg_lambda": (number(0, 1e6), 1.0),
    "reg_alpha": (number(0, 1e6), 0.0),
    "n_jobs": (integer(1, 64), 1),
}


class RoundProgress(xgboost.callback.TrainingCallback):
    """Reports each boosting round with the metric just computed on the training set."""

    def __init__(self, progress, rounds: int):
        super().__init__()
        self.progress, self.rounds = progress, rounds

    def after_iteration(self, model, epoch: int, evals_log) -> bool:
        metrics = {f"train_{name}": history[-1] for name, history in evals_log["validation_0"].items()}
        self.progress.update(metrics, f"round {epoch + 1}/{self.rounds}")
        return False  # never stop early: the step total was announced up front


def fit(X, y, problem, progress):
    """Fit one booster; eval_metric and callbacks go to the constructor (xgboost 1.7 API)."""
    params = {name: problem.params[name] for name in HYPERPARAMETERS}
    if problem.task == "classification":
        estimator, metric = xgboost.XGBClassifier, "logloss" if problem.n_classes == 2 else "mlogloss"
    else:
        estimator, metric = xgboost.XGBRegressor, "rmse"
    model = estimator(**params, random_state=problem.params["random_state"], tree_method="hist",
                      eval_metric=metric, callbacks=[RoundProgress(progress, params["n_estimators"])])
    model.fit(X, y, eval_set=[(X, y)], verbose=False)
    model.set_params(callbacks=None)  # keep the job-bound callback out of the saved model
    return model


if __name__ == "__main__":
    run("xgboost", HYPERPARAMETERS, fit, units=lambda params: params["n_estimators"])
