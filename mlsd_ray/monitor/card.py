"""Card fields of the acting monitor (``monitoring.loop``): delayed labels, drift windows,
alerts and the retrain loop.

Pydantic only (``spec.py`` imports this module), so the card is checked when it loads::

    monitoring:
      loop:
        feedback:
          window_s: 86400            # a label later than this after its prediction is late
          sources:
            - {kind: postgres, uri: postgresql://postgres@127.0.0.1:5432/app, table: verdicts}
            - {kind: file, uri: s3://bucket/feedback/}        # JSON lines / Parquet / CSV
            - {kind: nats, uri: nats://127.0.0.1:4222, stream: FEEDBACK, subject: feedback.>}
        drift: {window_s: 3600, min_rows: 200}
        watch: {sustain_windows: 2, min_interval_s: 3600, max_retrains_per_day: 4}
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


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
