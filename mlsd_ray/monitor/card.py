"""Card fields of the acting monitor (``monitoring.loop``): delayed labels, drift windows,
alerts and the retrain loop.

The classes live in ``spec.py`` (the card layer), so the card is checked when it loads::

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

from mlsd_ray.spec import DriftWindows, Feedback, FeedbackSource, MonitoringLoop, Watch

__all__ = ["DriftWindows", "Feedback", "FeedbackSource", "MonitoringLoop", "Watch"]
