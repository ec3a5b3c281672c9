"""The one error module. Every message says what failed, why, and what to change.

``exit_code`` is what ``mlsd`` exits with (documented in the README): 1 a failure, 2 a bad card
or bad input, 3 the evaluation gate refused the candidate.
"""

from __future__ import annotations


class MlsdError(Exception):
    """Base class for every error mlsd-ray raises on purpose."""

    exit_code = 1

    def __init__(self, what: str, why: str = "", fix: str = "") -> None:
        self.what, self.why, self.fix = what, why, fix
        parts = [what]
        if why:
            parts.append(f"Why: {why}")
        if fix:
            parts.append(f"Fix: {fix}")
        super().__init__(" ".join(parts))

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        # Pickle (Ray tasks, processes) rebuilds from what/why/fix, not from the joined
        # message, so the fix survives the trip.
        return type(self), (self.what, self.why, self.fix)


class CardError(MlsdError):
    """The design card is malformed; the message names the key path."""

    exit_code = 2


class SourceError(MlsdError):
    """A data source cannot be read (missing file, unreachable bucket, bad encoding)."""

    exit_code = 2


class DataError(MlsdError):
    """The data read fine but cannot be used (no rows left, one class only, ...)."""

    exit_code = 2


class ModelError(MlsdError):
    """A model artifact is missing, malformed, or used before it was fitted."""


class NotFittedError(ModelError, ValueError):
    """transform/predict called before fit (scikit-learn contract)."""


class RegistryError(MlsdError):
    """The model registry has no such model, version or alias."""


class GateError(MlsdError):
    """Raised only when a caller asks promotion to be mandatory and the gate failed."""

    exit_code = 3


class InvalidInput(MlsdError, ValueError):
    """A request instance does not match the model's input schema (maps to HTTP 422)."""

    exit_code = 2


class BadRequest(MlsdError, ValueError):
    """The request cannot be served as sent; ``status_code`` is the HTTP status to answer
    (4xx, or 503 when overloaded) and ``reason`` the sentence saying what to change."""

    def __init__(self, status_code: int, reason: str, fix: str = "") -> None:
        super().__init__(reason, fix=fix)
        self.status_code, self.reason = status_code, reason

    def __reduce__(self) -> tuple[type, tuple[int, str, str]]:  # type: ignore[override]
        return type(self), (self.status_code, self.reason, self.fix)


class StorageError(MlsdError):
    """The workdir's storage (an ``s3://`` bucket, the tracking server) cannot be used, or a
    path or URI tries to leave the folder it belongs to."""


class ServiceError(MlsdError):
    """Something this run needs is taken or unreachable: a port in use, a Ray address where
    no cluster answers."""
