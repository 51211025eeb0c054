"""Job runner shared by the trainer's training scripts.

Reads the TRAIN_* environment, validates hyperparameters, loads the data,
evaluates with k-fold cross-validation or a hold-out split while reporting
progress, then writes metadata and model atomically and reports the artifact.
Each script only supplies its hyperparameter specs, a ``fit`` function and the
number of progress units one fit takes.
"""
import json
import math
import os
import platform
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone

import joblib
import numpy as np
import sklearn
from sklearn import metrics as skm
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from _trainer_common import (TrainerError, emit, fail, integer, json_safe, log, number, parse_hyperparameters,
                             write_atomic)
from _trainer_data import Dataset, check_splittable, load_dataset

COMMON_HYPERPARAMETERS = {
    "random_state": (integer(0, 2**32 - 1), 42),
    "cv_folds": (integer(2, 20), 5),
    "test_size": (number(0.05, 0.5), 0.2),
}


# --- configuration ----------------------------------------------------------------

@dataclass
class Config:
    """What the supervisor passes through the environment."""

    job_id: str
    model_type: str
    artifact_path: str
    use_cv: bool
    retrain: bool
    hyperparameters: str


def _flag(name: str) -> bool:
    """A "true"/"false" variable; anything else is a supervisor bug worth reporting."""
    value = os.environ.get(name, "false")
    if value not in ("true", "false"):
        raise TrainerError("runtime_error", f"{name} must be 'true' or 'false'; got {value!r}")
    return value == "true"


def read_config(model_type: str) -> Config:
    """Read and sanity-check the TRAIN_* variables."""
    requested = os.environ.get("TRAIN_MODEL_TYPE", model_type)
    if requested != model_type:
        raise TrainerError("runtime_error",
                           f"TRAIN_MODEL_TYPE={requested!r} but this script trains {model_type!r}")
    path = os.environ.get("TRAIN_ARTIFACT_PATH", "")
    if not (os.path.isabs(path) and path.endswith(".joblib")):
        raise TrainerError("runtime_error",
                           f"TRAIN_ARTIFACT_PATH must be an absolute path ending in .joblib; got {path!r}")
    return Config(os.environ.get("TRAIN_JOB_ID", ""), model_type, path, _flag("TRAIN_USE_CV"),
                  _flag("TRAIN_RETRAIN"), os.environ.get("TRAIN_HYPERPARAMETERS", "{}"))


# --- progress -------------------------------------------------------------------

class Progress:
    """Job-wide step counter; total is fixed up front (one step per training unit).

    Intermediate steps are sent at most every ``MIN_INTERVAL`` seconds: a fast model can
    finish thousands of units a second and every line becomes a stored event. A fit's
    last step (with its fold scores) is always sent.
    """

    MIN_INTERVAL = 0.05

    def __init__(self, total: int):
        self.total = total
        self.step = 0
        self.sent_at = 0.0

    def due(self) -> bool:
        """True when enough time has passed to send an intermediate step."""
        return time.monotonic() - self.sent_at >= self.MIN_INTERVAL

    def advance(self, to_step: int, metrics: dict, message: str) -> None:
        """Emit one progress line at ``to_step`` (always beyond the previous one)."""
        self.step = to_step
        self.sent_at = time.monotonic()
        emit("progress", step=to_step, total=self.total, metrics=metrics, message=message)


class FitProgress:
    """Progress of one fit, ``units`` steps long.

    The last unit is held back until ``finish`` so evaluation results (fold
    scores) ride on it, and so the fit always ends exactly on its planned step.
    """

    def __init__(self, job: Progress, units: int, label: str):
        self.job, self.units, self.label = job, units, label
        self.start, self.done, self.last = job.step, 0, {}

    def update(self, metrics: dict, message: str) -> None:
        """Called by the model after each unit (epoch, boosting round, tree batch)."""
        self.done += 1
        self.last = metrics
        if self.done < self.units and self.job.due():
            self.job.advance(self.start + self.done, metrics, f"{self.label}: {message}")

    def finish(self, extra: dict, message: str) -> None:
        """Emit the fit's last step with the latest training metrics plus ``extra``."""
        self.job.advance(self.start + self.units, {**self.last, **extra}, f"{self.label}: {message}")


@dataclass
class Problem:
    """What a script's ``fit`` needs besides the data."""

    task: str
    n_classes: int
    params: dict


# --- evaluation -------------------------------------------------------------------

def evaluate(model, X: np.ndarray, y: np.ndarray, problem: Problem) -> dict:
    """accuracy, macro f1 (+ roc_auc when binary) or r2, rmse, mae."""
    predicted = model.predict(X)
    if problem.task == "regression":
        scores = {"r2": skm.r2_score(y, predicted),
                  "rmse": math.sqrt(skm.mean_squared_error(y, predicted)),
                  "mae": skm.mean_absolute_error(y, predicted)}
    else:
        scores = {"accuracy": skm.accuracy_score(y, predicted),
                  "f1": skm.f1_score(y, predicted, average="macro", zero_division=0)}
    if problem.n_classes == 2:
        both = len(np.unique(y)) == 2
        scores["roc_auc"] = skm.roc_auc_score(y, model.predict_proba(X)[:, 1]) if both else math.nan
    return {name: round(float(v), 6) for name, v in scores.items()}


def _summary(scores: dict) -> str:
    return ", ".join(f"{name}={value:.4f}" for name, value in scores.items())


def cross_validate(data: Dataset, problem: Problem, fit, units: int):
    """k-fold CV (stratified for classification), then a final fit on all rows."""
    k, seed = problem.params["cv_folds"], problem.params["random_state"]
    folding = StratifiedKFold if problem.task == "classification" else KFold
    splitter = folding(n_splits=k, shuffle=True, random_state=seed)
    job, folds = Progress((k + 1) * units), []
    for fold, (train, test) in enumerate(splitter.split(data.X, data.y), start=1):
        progress = FitProgress(job, units, f"fold {fold}/{k}")
        model = fit(data.X[train], data.y[train], problem, progress)
        scores = evaluate(model, data.X[test], data.y[test], problem)
        folds.append(scores)
        log(f"fold {fold}/{k}: {_summary(scores)}")
        progress.finish({f"val_{name}": v for name, v in scores.items()}, f"done, {_summary(scores)}")
    metrics = {"evaluation": "cv", "cv_folds": k, "fold_metrics": folds}
    for name in folds[0]:
        values = np.array([f[name] for f in folds], dtype=np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN roc_auc stays NaN -> null
            metrics[name] = round(float(np.nanmean(values)), 6)
            metrics[f"{name}_std"] = round(float(np.nanstd(values)), 6)
    log(f"cross-validation mean: {_summary({n: metrics[n] for n in folds[0]})}")
    progress = FitProgress(job, units, "final fit")
    model = fit(data.X, data.y, problem, progress)
    progress.finish({}, "done")
    return model, metrics


def holdout(data: Dataset, problem: Problem, fit, units: int):
    """Fit on a train split, score on the held-out test split."""
    size, seed = problem.params["test_size"], problem.params["random_state"]
    stratify = data.y if problem.task == "classification" else None
    X_train, X_test, y_train, y_test = train_test_split(data.X, data.y, test_size=size, random_state=seed,
                                                        stratify=stratify)
    log(f"hold-out split: {len(y_train)} train rows, {len(y_test)} test rows")
    progress = FitProgress(Progress(units), units, "fit")
    model = fit(X_train, y_train, problem, progress)
    scores = evaluate(model, X_test, y_test, problem)
    log(f"test: {_summary(scores)}")
    progress.finish({f"test_{name}": v for name, v in scores.items()}, f"done, test {_summary(scores)}")
    return model, {**scores, "evaluation": "holdout", "test_size": size,
                   "n_train": len(y_train), "n_test": len(y_test)}


# --- saving ---------------------------------------------------------------------

def training_spec(config: Config, params: dict, data: Dataset):
    """The spec the server computed (TRAIN_SPEC) and its fingerprint, checked against this run.

    The server reuses a model only when the fingerprint recorded here matches a new request,
    so it is recorded only when the spec describes what was really trained: the same
    hyperparameters after defaults, evaluation and data (the file may change after submit).
    """
    fingerprint = os.environ.get("TRAIN_SPEC_FINGERPRINT") or None
    try:
        spec = json.loads(os.environ.get("TRAIN_SPEC") or "null")
    except json.JSONDecodeError:
        spec = None
    if fingerprint is None or not isinstance(spec, dict):
        return None, None
    dataset = spec.get("dataset") or {}
    mismatch = ("model type" if spec.get("model_type") != config.model_type
                else "hyperparameters" if spec.get("hyperparameters") != params
                else "use_cv" if spec.get("use_cv") != config.use_cv
                else "dataset" if dataset.get("sha256", data.sha256) != data.sha256
                or dataset.get("builtin", data.name) != data.name
                else None)
    if mismatch:
        log(f"training spec not recorded: the {mismatch} trained differ from TRAIN_SPEC; "
            "this model will not be reused")
        return None, spec
    return fingerprint, spec


def save(config: Config, params: dict, data: Dataset, model, metrics: dict) -> None:
    """Metadata first, then the model: the model's rename is the commit point."""
    fingerprint, spec = training_spec(config, params, data)
    versions = {"python": platform.python_version(), "sklearn": sklearn.__version__,
                "numpy": np.__version__, "joblib": joblib.__version__}
    if "xgboost" in sys.modules:
        versions["xgboost"] = sys.modules["xgboost"].__version__
    metadata = {"model_type": config.model_type, "job_id": config.job_id, "task": data.task,
                "retrain": config.retrain, "hyperparameters": params, "metrics": metrics,
                "dataset": data.describe(), "versions": versions,
                "spec_fingerprint": fingerprint, "spec": spec,
                "created_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")}
    text = json.dumps(json_safe(metadata), indent=2, allow_nan=False) + "\n"
    os.makedirs(os.path.dirname(config.artifact_path), exist_ok=True)
    write_atomic(config.artifact_path[: -len(".joblib")] + ".meta.json", lambda h: h.write(text.encode()))
    write_atomic(config.artifact_path, lambda h: joblib.dump(model, h))
    log(f"saved model to {config.artifact_path}")


# --- entry point ----------------------------------------------------------------

def run(model_type: str, specs: dict, fit, units) -> None:
    """Run one training job and exit: 0 with the model saved, 1/2 on failure.

    ``fit(X, y, problem, progress)`` returns a fitted estimator and calls
    ``progress.update`` exactly ``units(params)`` times.
    """
    try:
        config = read_config(model_type)
        params = parse_hyperparameters(config.hyperparameters, {**COMMON_HYPERPARAMETERS, **specs})
        data = load_dataset(os.environ.get("DATASET_PATH"), os.environ.get("DATASET_TARGET"),
                            os.environ.get("DATASET_TASK") or "auto", log)
        check_splittable(data, params, config.use_cv)
        log(f"job {config.job_id}: {model_type} on {data.name} ({data.task}), "
            f"{data.X.shape[0]} rows x {data.X.shape[1]} features, hyperparameters {json.dumps(params)}")
        problem = Problem(data.task, len(data.classes or []), params)
        evaluation = cross_validate if config.use_cv else holdout
        model, metrics = evaluation(data, problem, fit, units(params))
        metrics.update(task=data.task, n_samples=int(data.X.shape[0]), n_features=int(data.X.shape[1]))
        emit("metrics", metrics=metrics)
        save(config, params, data, model, metrics)
        emit("artifact", path=config.artifact_path)
    except TrainerError as error:
        fail(error)
    except Exception as exc:  # anything unexpected: keep the traceback, then the one-line reason last
        traceback.print_exc()
        fail(TrainerError("runtime_error", f"training failed: {type(exc).__name__}: {exc}"))
    sys.exit(0)
