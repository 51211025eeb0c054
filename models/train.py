"""Train a neural network for the trainer service (model type "neural-net").

Started by the supervisor as ``/usr/bin/python3 models/train.py``; the whole
contract (environment, protocol lines, files written) is documented in
_trainer_job / _trainer_common.  A StandardScaler + MLP pipeline: the scaler
is fitted first, then the MLP is trained one epoch per ``partial_fit`` call so
each epoch is a progress step carrying training loss and accuracy / r2.
Regression trains on a standardised target (see _unstandardise_output).
"""
import os
import sys
import warnings

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts (that directory may hold models)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier, MLPRegressor  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from _trainer_common import integer, integer_list, literal, number  # noqa: E402
from _trainer_job import run  # noqa: E402

HYPERPARAMETERS = {
    "hidden_layer_sizes": (integer_list(1, 10, 1, 4096), [64, 32]),
    "learning_rate": (number(1e-6, 1), 0.001),
    "epochs": (integer(1, 10000), 50),
    "batch_size": (integer(1, 100000), 32),
    "alpha": (number(0, 1e6), 0.0001),
    "activation": (literal("relu", "tanh", "logistic", "identity"), "relu"),
}


def fit(X, y, problem, progress):
    """Scale, then train epoch by epoch; returns the whole Pipeline."""
    p = problem.params
    scaler = StandardScaler().fit(X)
    scaled = scaler.transform(X)
    classify = problem.task == "classification"
    network = (MLPClassifier if classify else MLPRegressor)(
        hidden_layer_sizes=tuple(p["hidden_layer_sizes"]), activation=p["activation"], alpha=p["alpha"],
        learning_rate_init=p["learning_rate"], random_state=p["random_state"],
        batch_size=min(p["batch_size"], len(y)))  # sklearn would clip it too, with a warning
    extra = {"classes": np.arange(problem.n_classes)} if classify else {}
    mean, scale = (0.0, 1.0) if classify else (y.mean(), y.std() or 1.0)
    target = y if classify else (y - mean) / scale
    for epoch in range(1, p["epochs"] + 1):
        network.partial_fit(scaled, target, **extra)
        score = network.score(scaled, target)  # r2 is unchanged by the target standardisation
        metrics = {"train_loss": network.loss_, "train_accuracy" if classify else "train_r2": score}
        progress.update(metrics, f"epoch {epoch}/{p['epochs']}")
    if not classify:
        _unstandardise_output(network, mean, scale)
    return Pipeline([("scaler", scaler), ("mlp", network)])


def _unstandardise_output(network, mean: float, scale: float) -> None:
    """Fold the target standardisation into the (identity) output layer.

    An MLP learns badly on raw targets in the hundreds, so regression trains on
    (y - mean) / scale; rescaling the last layer makes the saved plain Pipeline
    predict in the original units without any custom wrapper class.
    """
    network.coefs_[-1] *= scale
    network.intercepts_[-1] = network.intercepts_[-1] * scale + mean


if __name__ == "__main__":
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    run("neural-net", HYPERPARAMETERS, fit, units=lambda params: params["epochs"])
