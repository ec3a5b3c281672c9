"""Checks run before a stage does any work: is the bucket there, does the tracking server answer?

Without them an unreachable S3 endpoint surfaces minutes later inside a Ray task, after
pyarrow's retries, as an opaque ``AWS Error NETWORK_CONNECTION``; a down MLflow server only
when the stage registers its model. Each check takes a few seconds at most and names what to fix.
"""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlparse

import pyarrow.fs as pafs

from mlsd_ray.errors import StorageError
from mlsd_ray.settings import Workdir


def s3_endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")


def _reachable(host: str, port: int, timeout_s: float) -> OSError | None:
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
        return None
    except OSError as err:
        return err


def check_workdir(wd: Workdir) -> None:
    """An ``s3://`` workdir: the endpoint answers and the bucket exists (local: nothing)."""
    if not wd.remote:
        return
    bucket = wd.uri[len("s3://") :].split("/", 1)[0]
    endpoint = s3_endpoint()
    timeout = wd.preflight_timeout_s
    if endpoint:
        url = urlparse(endpoint)
        port = url.port or (443 if url.scheme == "https" else 80)
        err = _reachable(url.hostname or "", port, timeout)
        if err is not None:
            raise StorageError(
                f"The S3 endpoint {endpoint} of workdir {wd.uri} is unreachable ({err}).",
                why="AWS_ENDPOINT_URL points at a server that does not answer",
                fix="start the object store, or fix AWS_ENDPOINT_URL (unset it for AWS S3)",
            )
    kwargs: dict[str, Any] = {
        "connect_timeout": timeout,
        "request_timeout": timeout,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=1),
    }
    from mlsd_ray.storage import s3_filesystem

    fs = s3_filesystem(**kwargs)
    try:
        info = fs.get_file_info(bucket)
    except OSError as err:
        raise StorageError(
            f"Cannot use the bucket {bucket!r} of workdir {wd.uri}: {err}",
            why="the credentials are wrong or the endpoint refused the request",
            fix="check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and AWS_ENDPOINT_URL",
        ) from None
    if info.type == pafs.FileType.NotFound:
        raise StorageError(
            f"The bucket {bucket!r} of workdir {wd.uri} does not exist"
            + (f" at {endpoint}." if endpoint else "."),
            fix=f"create it first (e.g. `aws s3 mb s3://{bucket}`) or pick another --workdir",
        )


def check_tracking(uri: str, timeout_s: float = 10.0) -> None:
    """An ``http(s)://`` MLflow tracking server answers ``/health`` (sqlite: nothing to check)."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s) as r:
            if r.status == 200:
                return
            problem = f"it answered HTTP {r.status}"
    except urllib.error.HTTPError as err:
        if err.code in (401, 403):
            return  # basic auth in front of the server: it is up; credentials are checked later
        problem = f"it answered HTTP {err.code}"
    except (urllib.error.URLError, OSError) as err:
        problem = f"no answer ({getattr(err, 'reason', err)})"
    raise StorageError(
        f"The MLflow tracking server {uri} is down: {problem}.",
        why="MLFLOW_TRACKING_URI (or the card's storage.tracking_uri) points at it",
        fix="start it (`mlsd mlflow-server`), or unset MLFLOW_TRACKING_URI to use the "
        "workdir's sqlite store",
    )
