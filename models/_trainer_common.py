"""Protocol primitives shared by the trainer's training scripts.

The supervisor reads a script's stdout line by line: a line starting with
``@@trainer `` carries one JSON protocol message (progress, metrics, artifact,
error); every other line is plain log.  This module holds the lowest layer:
the known-failure exception, the protocol emitters, hyperparameter checks and
the atomic file write.  _trainer_data loads datasets, _trainer_job runs a job.
"""
import json
import math
import os
import sys

import numpy as np

PREFIX = "@@trainer "


class TrainerError(Exception):
    """A known failure, reported with a machine-readable protocol reason."""

    def __init__(self, reason: str, message: str, exit_code: int = 1):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.exit_code = exit_code


# --- protocol -----------------------------------------------------------------

def json_safe(value):
    """JSON-safe copy: numpy scalars to Python, NaN/inf to None (JSON has neither)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def emit(event: str, **fields) -> None:
    """Write one protocol line; flushed at once so the supervisor sees it live."""
    line = json.dumps(json_safe({"event": event, **fields}), allow_nan=False, separators=(",", ":"))
    print(PREFIX + line, flush=True)


def log(message: str) -> None:
    """A plain, human-readable stdout line."""
    print(message, flush=True)


def fail(error: TrainerError) -> None:
    """Report a failure: protocol line, then the message as stderr's last line."""
    emit("error", reason=error.reason, message=error.message)
    print(error.message, file=sys.stderr, flush=True)
    sys.exit(error.exit_code)


# --- hyperparameters ------------------------------------------------------------
# A check returns the normalised value or raises ValueError(<expected, as a noun phrase>).

def _is_number(value) -> bool:
    """A finite JSON number (JSON true/false arrive as bool, a subclass of int)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def integer(lo: int, hi: int):
    """An integer in [lo, hi] (an integral float such as 5.0 is accepted)."""
    def check(value):
        if _is_number(value) and float(value).is_integer() and lo <= value <= hi:
            return int(value)
        raise ValueError(f"an integer in [{lo}, {hi}]")
    return check


def number(lo: float, hi: float = math.inf, lo_open: bool = False):
    """A float in [lo, hi], or (lo, hi] when lo_open; always returned as float."""
    def check(value):
        if _is_number(value) and (value > lo if lo_open else value >= lo) and value <= hi:
            return float(value)
        raise ValueError(f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{']' if hi < math.inf else ')'}")
    return check


def literal(*choices: str):
    """One of the given strings."""
    def check(value):
        if isinstance(value, str) and value in choices:
            return value
        raise ValueError("one of " + ", ".join(json.dumps(c) for c in choices))
    return check


def null(value):
    """JSON null (for hyperparameters where null means 'no limit')."""
    if value is None:
        return None
    raise ValueError("null")


def any_of(*checks):
    """The first check that accepts the value wins."""
    def check(value):
        expected = []
        for candidate in checks:
            try:
                return candidate(value)
            except ValueError as exc:
                expected.append(str(exc))
        raise ValueError(" or ".join(expected))
    return check


def integer_list(min_len: int, max_len: int, lo: int, hi: int):
    """A list of min_len..max_len integers, each in [lo, hi]."""
    item = integer(lo, hi)

    def check(value):
        try:
            if isinstance(value, list) and min_len <= len(value) <= max_len:
                return [item(v) for v in value]
        except ValueError:
            pass
        raise ValueError(f"a list of {min_len} to {max_len} integers in [{lo}, {hi}]")
    return check


def parse_hyperparameters(text: str, specs: dict) -> dict:
    """Merge TRAIN_HYPERPARAMETERS over the defaults; reject anything unexpected."""
    def reject(message):
        return TrainerError("invalid_hyperparameters", message, exit_code=2)
    try:
        given = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise reject(f"TRAIN_HYPERPARAMETERS is not valid JSON: {exc}") from None
    if not isinstance(given, dict):
        raise reject("TRAIN_HYPERPARAMETERS must be a JSON object")
    unknown = sorted(set(given) - set(specs))
    if unknown:
        raise reject(f"unknown hyperparameter(s): {', '.join(unknown)}; accepted: {', '.join(sorted(specs))}")
    params = {}
    for name, (check, default) in specs.items():
        value = given.get(name, default)
        try:
            params[name] = check(value)
        except ValueError as exc:
            raise reject(f"hyperparameter '{name}' must be {exc}; got {json.dumps(value)}") from None
    return params


# --- files ----------------------------------------------------------------------

def write_atomic(path: str, write) -> None:
    """Write through ``<name>.tmp`` in the same directory, then rename.

    Readers never see a partial file; a kill mid-write leaves only the .tmp.  The name is
    fixed, not per pid, so that the server can remove an unfinished job's temp file by its
    exact name: every job has its own artifact path, so no two writers share it.
    """
    tmp = f"{path}.tmp"
    try:
        # O_EXCL | O_NOFOLLOW: a name planted in the models directory (a symlink out of it)
        # is removed, never written through; unlink does not follow links.
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
