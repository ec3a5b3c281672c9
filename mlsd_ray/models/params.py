"""The typed ``params`` of every model kind, checked when the card loads.

Each class forbids unknown keys, so ``params: {c: 4}`` on logreg fails at load naming the kind
and the key. Nothing here imports torch or the libraries: the card loader imports this module.
Params the trainer fills from the card (``numeric``, ``categorical``, ``category``,
``n_classes``, ``text_input``) are accepted too, so a model's saved params validate as well.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlsd_ray.errors import CardError

Category = Literal["binary", "multiclass", "regression"]


class KindParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoParams(KindParams):
    """The baselines (majority, mean) have nothing to set."""


class TabularParams(KindParams):
    """Preprocessing of :class:`~mlsd_ray.features.TabularPreprocessor`; numeric and categorical
    default to the card's inputs of those types."""

    numeric: list[str] | None = None
    categorical: list[str] | None = None
    max_categories: int = Field(50, ge=1)
    #: column -> onehot | ordinal | hashing (onehot when absent).
    encodings: dict[str, Literal["onehot", "ordinal", "hashing"]] | None = None
    crosses: list[list[str]] | None = None
    hash_buckets: int = Field(32, ge=1)
    category: Category | None = None


class TfidfLogRegParams(KindParams):
    max_features: int = Field(50_000, ge=1)
    ngram_max: int = Field(2, ge=1, le=5)
    min_df: int = Field(2, ge=1)
    C: float = Field(4.0, gt=0)
    #: "balanced" weighs each class by n / (k * n_class): the answer to a rare class.
    class_weight: Literal["balanced"] | None = "balanced"
    seed: int = 0
    text_input: str | None = None


class LogRegParams(TabularParams):
    C: float = Field(1.0, gt=0)
    class_weight: Literal["balanced"] | None = "balanced"
    seed: int = 0


class RidgeParams(TabularParams):
    alpha: float = Field(1.0, ge=0)


class GBDTParams(TabularParams):
    """xgboost / LightGBM; see mlsd_ray.models.gbdt for the meaning of each."""

    n_estimators: int | None = Field(None, ge=1)
    num_boost_round: int | None = Field(None, ge=1)
    max_depth: int = Field(6, ge=-1)
    learning_rate: float = Field(0.1, gt=0)
    early_stopping_rounds: int = Field(20, ge=0)
    class_weight: Literal["balanced", "none"] | None = "balanced"
    scale_pos_weight: float | None = Field(None, ge=0)
    loss: Literal["squared_error", "pseudo_huber"] = "squared_error"
    subsample: float = Field(1.0, gt=0, le=1)
    colsample: float = Field(1.0, gt=0, le=1)
    min_child_weight: float = Field(1.0, ge=0)
    n_threads: int = Field(1, ge=1)
    seed: int = Field(0, ge=0)


class MemberSpec(KindParams):
    """One ensemble member, e.g. ``{kind: logreg, params: {C: 1.0}}``; its params are checked
    against the member kind's own Params."""

    kind: str
    params: dict[str, Any] = Field(default_factory=dict)
    name: str | None = None

    @model_validator(mode="after")
    def _member(self) -> MemberSpec:
        from mlsd_ray.models.kinds import KINDS, check_params

        members = [k for k, info in KINDS.items() if info.ensemble_member]
        if self.kind not in members:
            raise ValueError(
                f"kind {self.kind!r} cannot be an ensemble member; use one of {members}"
            )
        check_params(self.kind, self.params)
        return self


class BaggingParams(TabularParams):
    base: MemberSpec = Field(default_factory=lambda: MemberSpec(kind="logreg"))
    n_estimators: int = Field(10, ge=1)
    #: ``balanced``: every bag draws as many rows of each class (balanced bagging).
    sample: Literal["bootstrap", "balanced"] = "bootstrap"
    max_samples: float = Field(1.0, gt=0, le=10)
    seed: int = Field(0, ge=0)


class StackingParams(TabularParams):
    base: list[MemberSpec] = Field(
        default_factory=lambda: [MemberSpec(kind="logreg"), MemberSpec(kind="xgboost")],
        min_length=2,
    )
    folds: int = Field(5, ge=2)
    meta_C: float = Field(1.0, gt=0)
    seed: int = Field(0, ge=0)


class BlendParams(KindParams):
    """Kind ``blend``: other candidates of the card, by name, combined (a cross-family
    ensemble, e.g. ``{members: [tfidf, minilm], method: stacking}``)."""

    members: list[str] = Field(min_length=2)
    method: Literal["stacking", "weighted"] = "stacking"
    folds: int = Field(5, ge=2)
    meta_C: float = Field(1.0, gt=0)
    seed: int = Field(0, ge=0)


class TransformerParams(KindParams):
    """Most transformer settings live in ``trainer``; params hold the head's and the loop's."""

    dropout: float = Field(0.1, ge=0, lt=1)
    #: A JSON-lines file the loop appends its progress to (watching a run from outside).
    progress_file: str | None = None
    text_input: str | None = None
    n_classes: int | None = Field(None, ge=2)


class MLPParams(BaseModel):
    """Options of kind ``mlp``. Example::

    params: {hidden: [64, 32], cross_layers: 2, dropout: 0.2, epochs: 30, patience: 5,
             loss: focal, focal_gamma: 2.0, class_weight: balanced, weight_decay: 1e-4}
    """

    model_config = ConfigDict(extra="forbid")
    #: Widths of the hidden layers of the deep part, e.g. ``[64, 32]``.
    hidden: list[int] = Field(default_factory=lambda: [64, 32])
    #: Cross layers in parallel with the MLP (deep-and-cross network); 0 = a plain MLP.
    cross_layers: int = Field(0, ge=0, le=8)
    dropout: float = Field(0.1, ge=0, lt=1)
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(256, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    #: AdamW decoupled weight decay (L2 regularisation).
    weight_decay: float = Field(1e-4, ge=0)
    #: Stop after this many epochs without a lower validation loss; 0 = never stop early.
    patience: int = Field(5, ge=0)
    #: auto = cross_entropy (binary/multiclass) or mse (regression); also focal, huber.
    loss: Literal["auto", "cross_entropy", "focal", "mse", "huber"] = "auto"
    focal_gamma: float = Field(2.0, ge=0)
    huber_delta: float = Field(1.0, gt=0)
    #: balanced = n / (k * n_class) per class, from the train split.
    class_weight: Literal["none", "balanced"] = "none"
    seed: int = 0
    #: Ray Train workers (DDP when > 1); 0 = train in the driver process.
    num_workers: int = Field(1, ge=0)
    cpus_per_worker: int = Field(1, ge=1)
    # Preprocessing (TabularPreprocessor); the trainer fills numeric/categorical from the card.
    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    encodings: dict[str, str] | None = None
    crosses: list[list[str]] | None = None
    hash_buckets: int = Field(32, ge=1)
    max_categories: int = Field(50, ge=1)
    # Filled by the trainer from the card.
    category: Literal["binary", "multiclass", "regression"] = "binary"
    n_classes: int = Field(2, ge=1)

    @classmethod
    def from_params(cls, params: dict[str, Any], where: str = "params") -> MLPParams:
        """Validate with errors that name the card key, e.g. ``models.mlp.params.dropout``."""
        try:
            return cls.model_validate(params)
        except ValidationError as err:
            lines = []
            for e in err.errors():
                key = ".".join(str(p) for p in e["loc"])
                if e["type"] == "extra_forbidden":
                    known = sorted(cls.model_fields)
                    lines.append(f"{where}.{key}: unknown option; known: {known}")
                else:
                    lines.append(f"{where}.{key}: got {e.get('input')!r}; {e['msg'].lower()}")
            raise CardError("Invalid mlp options:\n  " + "\n  ".join(lines)) from None

    @property
    def n_outputs(self) -> int:
        return 1 if self.category in ("binary", "regression") else self.n_classes


class CNNParams(BaseModel):
    """Options of kind ``cnn``. Example::

    params: {channels: [16, 32], dropout: 0.1, epochs: 15, batch_size: 64}
    """

    model_config = ConfigDict(extra="forbid")
    #: Output channels of each conv block (each block halves the image while it is >= 2).
    channels: list[int] = Field(default_factory=lambda: [16, 32], min_length=1, max_length=6)
    dropout: float = Field(0.1, ge=0, lt=1)
    epochs: int = Field(15, ge=1)
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    #: Stop after this many epochs without a lower validation loss; 0 = never stop early.
    patience: int = Field(4, ge=0)
    class_weight: Literal["none", "balanced"] = "none"
    seed: int = 0
    #: Ray Train workers (DDP when > 1); 0 = train in the driver process.
    num_workers: int = Field(1, ge=0)
    cpus_per_worker: int = Field(1, ge=1)
    # Filled by the trainer from the card.
    width: int = Field(8, ge=1)
    height: int = Field(8, ge=1)
    mode: Literal["L", "RGB"] = "L"
    category: Literal["binary", "multiclass"] = "multiclass"
    n_classes: int = Field(2, ge=2)

    @classmethod
    def from_params(cls, params: dict[str, Any], where: str = "params") -> CNNParams:
        """Validate with errors that name the card key, e.g. ``models.cnn.params.dropout``."""
        try:
            return cls.model_validate(params)
        except ValidationError as err:
            lines = []
            for e in err.errors():
                key = ".".join(str(p) for p in e["loc"])
                if e["type"] == "extra_forbidden":
                    lines.append(
                        f"{where}.{key}: unknown option; known: {sorted(cls.model_fields)}"
                    )
                else:
                    lines.append(f"{where}.{key}: got {e.get('input')!r}; {e['msg'].lower()}")
            raise CardError("Invalid cnn options:\n  " + "\n  ".join(lines)) from None

    @property
    def in_channels(self) -> int:
        return 1 if self.mode == "L" else 3

    @property
    def n_outputs(self) -> int:
        return 1 if self.category == "binary" else self.n_classes

    def loop(self) -> MLPParams:
        """The options the shared epoch loop and loss read, as the loop's own type."""
        return MLPParams(
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            patience=self.patience,
            class_weight=self.class_weight,
            seed=self.seed,
            num_workers=self.num_workers,
            cpus_per_worker=self.cpus_per_worker,
            category=self.category,
            n_classes=self.n_classes,
        )
