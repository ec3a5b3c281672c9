"""The one error module. Every message says what failed, why, and what to change."""

from __future__ import annotations


class MlsdError(Exception):
    """Base class for every error mlsd-ray raises on purpose."""

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


class SourceError(MlsdError):
    """A data source cannot be read (missing file, unreachable bucket, bad encoding)."""


class DataError(MlsdError):
    """The data read fine but cannot be used (no rows left, one class only, ...)."""


class ModelError(MlsdError):
    """A model artifact is missing, malformed, or used before it was fitted."""


class NotFittedError(ModelError, ValueError):
    """transform/predict called before fit (scikit-learn contract)."""


class RegistryError(MlsdError):
    """The model registry has no such model, version or alias."""


class GateError(MlsdError):
    """Raised only when a caller asks promotion to be mandatory and the gate failed."""


class StorageError(MlsdError):
    """The workdir's storage (an ``s3://`` bucket, the tracking server) cannot be used, or a
    path or URI tries to leave the folder it belongs to."""
