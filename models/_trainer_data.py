"""Dataset loading and checks for the trainer's training scripts.

Without DATASET_PATH the data is scikit-learn's bundled breast_cancer set (or
diabetes when DATASET_TASK=regression): nothing is ever downloaded.

CSV rules (DATASET_PATH):
  * UTF-8, header row required; DATASET_TARGET names the target column
    (default: the last column); blank lines are ignored;
  * feature cells must be numbers; empty/NA/NaN/null cells are imputed with
    the column mean (and logged); a feature column with no value at all, a
    non-numeric or infinite feature value, or a row without a target value is
    a dataset error naming the column, the value and where it is in the file;
  * DATASET_TASK=auto picks classification when the target is non-numeric, or
    integer-valued with at most 20 distinct values and at least 5 rows per
    distinct value on average; regression otherwise;
  * class labels are encoded as 0..k-1 (the saved models predict these
    indices); the original labels are kept, in order, in ``Dataset.classes``.
"""
import csv
import io
import math
from dataclasses import dataclass
from hashlib import sha256
from typing import Optional

import numpy as np
from sklearn import datasets

from _trainer_common import TrainerError

MIN_ROWS = 10
MAX_AUTO_CLASSES = 20
MIN_ROWS_PER_AUTO_CLASS = 5
MISSING = {"", "na", "nan", "null", "none"}
TASKS = ("auto", "classification", "regression")


def invalid(message: str) -> TrainerError:
    """Shorthand for the most common dataset failure."""
    return TrainerError("dataset_invalid", message)


@dataclass
class Dataset:
    """Features as float64, targets encoded, plus what the metadata needs."""

    name: str
    target: str
    task: str
    X: np.ndarray
    y: np.ndarray
    feature_names: list
    classes: Optional[list]
    sha256: str

    def describe(self) -> dict:
        """The ``dataset`` section of the metadata file."""
        described = {"name": self.name, "target": self.target,
                     "n_samples": int(self.X.shape[0]), "n_features": int(self.X.shape[1]),
                     "feature_names": self.feature_names, "sha256": self.sha256}
        if self.classes is not None:
            described["classes"] = self.classes
        return described


def load_dataset(path: Optional[str], target: Optional[str], task: str, log) -> Dataset:
    """Load the CSV at ``path``, or the built-in set when no path is given."""
    if task not in TASKS:
        raise invalid(f"DATASET_TASK must be one of {', '.join(TASKS)}; got {task!r}")
    if path:
        return _load_csv(path, target, task, log)
    if target:
        log(f"DATASET_TARGET={target!r} ignored: it only applies with DATASET_PATH")
    return _load_builtin(task)


def _load_builtin(task: str) -> Dataset:
    """breast_cancer (classification) or diabetes (regression), shipped with sklearn."""
    name, loader = ("diabetes", datasets.load_diabetes) if task == "regression" else (
        "breast_cancer", datasets.load_breast_cancer)
    bunch = loader()
    X = np.ascontiguousarray(bunch.data, dtype=np.float64)
    digest = sha256(X.tobytes() + np.ascontiguousarray(bunch.target).tobytes()).hexdigest()
    if name == "diabetes":
        return Dataset(name, "target", "regression", X, bunch.target.astype(np.float64),
                       list(bunch.feature_names), None, digest)
    return Dataset(name, "target", "classification", X, bunch.target.astype(np.int64),
                   list(bunch.feature_names), [str(c) for c in bunch.target_names], digest)


def _read_rows(path: str, raw: bytes) -> list:
    """Non-blank CSV rows as (line number, stripped cells)."""
    try:
        reader = csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline=""))
        return [(reader.line_num, [c.strip() for c in row]) for row in reader
                if any(c.strip() for c in row)]
    except UnicodeDecodeError:
        raise invalid(f"dataset file is not UTF-8 text: {path}") from None
    except csv.Error as exc:
        raise invalid(f"dataset file is not valid CSV ({exc}): {path}") from None


def _load_csv(path: str, target: Optional[str], task: str, log) -> Dataset:
    """Parse and validate a CSV dataset; every failure names what is wrong."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise TrainerError("dataset_not_found", f"dataset file not found: {path}") from None
    except OSError as exc:
        raise TrainerError("dataset_not_found", f"cannot read dataset file {path}: {exc.strerror}") from None
    rows = _read_rows(path, raw)
    if not rows:
        raise invalid(f"dataset file is empty: {path}")
    header, body = rows[0][1], rows[1:]
    target = target or header[-1]
    if target not in header:
        raise invalid(f"target column '{target}' not found in {path}; available columns: {', '.join(header)}")
    if len(header) < 2:
        raise invalid(f"dataset {path} has no feature columns besides the target '{target}'")
    if len(body) < MIN_ROWS:
        raise invalid(f"dataset {path} has only {len(body)} data rows; at least {MIN_ROWS} are needed")
    for line, cells in body:
        if len(cells) != len(header):
            raise invalid(f"line {line} of {path} has {len(cells)} fields; the header has {len(header)}")
    t = header.index(target)
    features = [name for i, name in enumerate(header) if i != t]
    columns = [_feature_column(name, i, body, path, log) for i, name in enumerate(header) if i != t]
    task, y, classes = _encode_target(target, [(line, cells[t]) for line, cells in body], task, path)
    X = np.column_stack(columns)
    log(f"dataset {path}: {X.shape[0]} rows, {X.shape[1]} features, target '{target}' ({task})")
    return Dataset(path, target, task, X, y, features, classes, sha256(raw).hexdigest())


def _number(cell: str) -> Optional[float]:
    """A finite float, None for a missing cell; ValueError otherwise."""
    if cell.lower() in MISSING:
        return None
    value = float(cell)
    if not math.isfinite(value):
        raise ValueError(cell)
    return value


def _feature_column(name: str, index: int, body: list, path: str, log) -> np.ndarray:
    """One numeric feature column, missing cells imputed with the column mean."""
    values = []
    for row, (line, cells) in enumerate(body, start=1):
        try:
            values.append(_number(cells[index]))
        except ValueError:
            raise invalid(f"feature column '{name}' is not numeric: value {cells[index]!r} "
                          f"in data row {row} (line {line} of {path})") from None
    column = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
    missing = int(np.isnan(column).sum())
    if missing == len(column):
        raise invalid(f"feature column '{name}' in {path} has no values")
    if missing:
        mean = float(np.nanmean(column))
        column[np.isnan(column)] = mean
        log(f"imputed {missing} missing value(s) in column '{name}' with the column mean {mean:.6g}")
    return column


def _encode_target(name: str, cells: list, task: str, path: str):
    """Resolve the task and encode the target: (task, y, classes or None)."""
    numbers = []
    for line, cell in cells:
        if cell.lower() in MISSING:
            raise invalid(f"target column '{name}' has no value at line {line} of {path}")
        try:
            numbers.append(_number(cell))
        except ValueError:
            if task == "regression":
                raise invalid(f"target column '{name}' is not numeric (value {cell!r} at line {line} "
                              f"of {path}) but DATASET_TASK=regression") from None
            numbers = None
            break
    if task == "auto":
        task = "classification" if numbers is None or _looks_categorical(numbers) else "regression"
    if task == "regression":
        return task, np.array(numbers, dtype=np.float64), None
    if numbers is None:
        classes, y = np.unique(np.array([cell for _, cell in cells], dtype=str), return_inverse=True)
        classes = classes.tolist()
    else:
        classes, y = np.unique(np.array(numbers), return_inverse=True)
        classes = [int(c) if c.is_integer() else c for c in classes.tolist()]
    if len(classes) < 2:
        raise invalid(f"target column '{name}' has a single class ({classes[0]!r}); "
                      "classification needs at least 2")
    return task, y.astype(np.int64), classes


def _looks_categorical(values: list) -> bool:
    """The documented auto rule for numeric targets (see the module docstring)."""
    distinct = len(set(values))
    return (all(v.is_integer() for v in values) and distinct <= MAX_AUTO_CLASSES
            and distinct * MIN_ROWS_PER_AUTO_CLASS <= len(values))


def check_splittable(data: Dataset, params: dict, use_cv: bool) -> None:
    """Fail early, with a clear message, when the split cannot work."""
    n, k = len(data.y), params["cv_folds"]
    if use_cv and n < k:
        raise invalid(f"dataset has {n} rows, fewer than cv_folds={k}")
    if data.classes is None:
        return
    counts = np.bincount(data.y)
    needed = k if use_cv else 2
    rare = int(np.argmin(counts))
    if counts[rare] < needed:
        raise invalid(f"class {data.classes[rare]!r} has only {counts[rare]} row(s); at least {needed} are needed"
                      + (f" for cv_folds={k}" if use_cv else " for a stratified hold-out split"))
    n_test = math.ceil(params["test_size"] * n)
    if not use_cv and min(n_test, n - n_test) < len(counts):
        raise invalid(f"test_size={params['test_size']} leaves too few rows to hold all {len(counts)} classes")
