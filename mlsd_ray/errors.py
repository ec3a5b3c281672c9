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


class ServiceError(MlsdError):
    """Something this run needs is taken or unreachable: a port in use, a Ray address where
    no cluster answers."""
