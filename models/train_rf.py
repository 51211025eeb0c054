"""Train a random forest for the trainer service (model type "random-forest").

Started by the supervisor as ``/usr/bin/python3 models/train_rf.py``; the
whole contract (environment, protocol lines, files written) is documented in
_trainer_job / _trainer_common.  The forest grows with warm_start,
``trees_per_step`` trees at a time; each batch is one progress step carrying
the out-of-bag score (accuracy or r2) of the forest so far.
"""
import math
import os
import sys
import warnings

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts (that directory may hold models)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor  # noqa: E402

from _trainer_common import any_of, integer, literal, null, number  # noqa: E402
from _trainer_job import run  # noqa: E402

HYPERPARAMETERS = {
    "n_estimators": (integer(1, 5000), 100),
    "max_depth": (any_of(integer(1, 100), null), None),
    "min_samples_split": (integer(2, 1000), 2),
    "min_samples_leaf": (integer(1, 1000), 1),
    "max_features": (any_of(literal("sqrt", "log2"), number(1e-6, 1), null), "sqrt"),
    "trees_per_step": (integer(1, 1000), 10),
    "n_jobs": (integer(1, 64), 1),
}


def batches(params: dict) -> int:
    """Progress units per fit: tree batches, the last one possibly smaller."""
    return math.ceil(params["n_estimators"] / params["trees_per_step"])


def fit(X, y, problem, progress):
    """Grow the forest batch by batch so progress is reported while it grows."""
    p = problem.params
    estimator = RandomForestClassifier if problem.task == "classification" else RandomForestRegressor
    model = estimator(n_estimators=0, warm_start=True, oob_score=True, max_depth=p["max_depth"],
                      min_samples_split=p["min_samples_split"], min_samples_leaf=p["min_samples_leaf"],
                      max_features=p["max_features"], random_state=p["random_state"], n_jobs=p["n_jobs"])
    for batch in range(1, batches(p) + 1):
        trees = min(batch * p["trees_per_step"], p["n_estimators"])
        model.set_params(n_estimators=trees)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # small forests leave some rows without OOB votes
            model.fit(X, y)
        progress.update({"oob_score": model.oob_score_}, f"{trees}/{p['n_estimators']} trees")
    return model.set_params(warm_start=False)  # a later refit by a consumer starts from scratch


if __name__ == "__main__":
    run("random-forest", HYPERPARAMETERS, fit, units=batches)
