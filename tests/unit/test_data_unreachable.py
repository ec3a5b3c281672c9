"""An object store that does not answer: the error names the source (or output) and the fix,
quickly, before any work starts."""

from __future__ import annotations

import time

import pytest

from mlsd_ray.data.etl import _check_output
from mlsd_ray.data.sources import list_files
from mlsd_ray.errors import SourceError
from tests.conftest import free_port


@pytest.fixture()
def dead_endpoint(monkeypatch: pytest.MonkeyPatch) -> str:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return endpoint


def test_unreachable_bucket_names_the_source(dead_endpoint: str) -> None:
    start = time.perf_counter()
    with pytest.raises(SourceError, match=r"'s3://mlsd-nowhere/x\.csv'.*cannot be reached") as err:
        list_files("s3://mlsd-nowhere/x.csv", "csv")
    assert "AWS_ENDPOINT_URL" in str(err.value)
    assert time.perf_counter() - start < 30


def test_unreachable_output_bucket_fails_before_the_work(dead_endpoint: str) -> None:
    with pytest.raises(SourceError, match=r"Cannot write ETL output to 's3://mlsd-nowhere/out'"):
        _check_output("s3://mlsd-nowhere/out")
