"""Read a card's data source into a Ray Dataset without ever losing a row silently.

Why not ``ray.data.read_csv``: it fails a whole file on one broken row and guesses column types.
Here every file is parsed inside its own Ray task with Python's ``csv`` module (quoted fields may
span lines, as in the Davidson tweets), every column is kept as a string, and a row that cannot
be parsed becomes a row with a ``_reason`` and its ``_raw`` text, which ETL quarantines.

Problems with the source itself (missing file or bucket, a required column absent, bytes that
are not UTF-8) raise ``SourceError`` naming the URI and the fix, before any row is verified.

Output columns: the source's columns (after ``rename``) as strings, then ``_source`` (the URI of
the file the row came from), ``_row`` (position in that file, from 1), ``_reason`` and ``_raw``
(set for rows that could not be parsed).
"""

from __future__ import annotations

import codecs
import csv
import fnmatch
import io
import json
import logging
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mlsd_ray import storage
from mlsd_ray.data.synthetic import materialize
from mlsd_ray.data.verify import META, RAW, REASON, ROW, SOURCE
from mlsd_ray.errors import SourceError
from mlsd_ray.spec import DesignCard, Source

if TYPE_CHECKING:
    import ray.data

log = logging.getLogger(__name__)

SUFFIXES = {
    "csv": (".csv",),
    "tsv": (".tsv", ".tab"),
    "parquet": (".parquet", ".pq"),
    "json": (".json", ".jsonl", ".ndjson"),
}
HEADER_BYTES = 1 << 20  # a header (or the first JSON lines) must fit in the first MiB
_FIELD_LIMIT = 1 << 28  # csv's default 128 KiB per field is too small for long texts
_UTF8_FIX = "re-save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 in.csv > out.csv`"


@dataclass(frozen=True)
class _File:
    path: str  # inside the filesystem
    uri: str  # what rows carry as _source


# Finding files ---------------------------------------------------------------------------
def _source_error(uri: str, what: str, why: str = "", fix: str = "") -> SourceError:
    return SourceError(f"Data source {uri!r}: {what}", why, fix or "check data.sources[].uri")


def _info(fs: pafs.FileSystem, path: str, uri: str) -> pafs.FileInfo:
    try:
        return fs.get_file_info(path)
    except OSError as err:
        raise _source_error(
            uri,
            "cannot be reached.",
            str(err),
            "check that the object store is up, AWS_ENDPOINT_URL and the AWS credentials",
        ) from None


def _list(fs: pafs.FileSystem, path: str, uri: str) -> list[pafs.FileInfo]:
    _info(fs, path, uri)  # turns network errors into SourceError
    try:
        return fs.get_file_info(pafs.FileSelector(path, recursive=True))
    except (FileNotFoundError, OSError) as err:
        raise _source_error(uri, "the folder does not exist.", str(err)) from None


def _missing(fs: pafs.FileSystem, path: str, uri: str) -> SourceError:
    if storage.is_remote(uri):
        bucket = path.split("/", 1)[0]
        if _info(fs, bucket, uri).type == pafs.FileType.NotFound:
            return _source_error(
                uri,
                f"bucket {bucket!r} does not exist.",
                fix="create the bucket and upload the data, or fix the bucket name",
            )
    return _source_error(uri, "no such file or folder.")


def list_files(uri: str, fmt: str) -> tuple[pafs.FileSystem, list[_File]]:
    """The files behind a local path, glob, folder or ``s3://`` URI, sorted."""
    fs, path = storage.filesystem(uri)
    scheme = "s3://" if storage.is_remote(uri) else ""
    if any(ch in path for ch in "*?["):
        base = path[: min(path.find(ch) for ch in "*?[" if ch in path)].rsplit("/", 1)[0]
        exists = _info(fs, base, uri).type != pafs.FileType.NotFound
        infos = _list(fs, base, uri) if exists else []
        found = sorted(i.path for i in infos if i.is_file and fnmatch.fnmatchcase(i.path, path))
        if not found:
            raise _source_error(uri, "no file matches this pattern.")
        return fs, [_File(p, scheme + p) for p in found]
    info = _info(fs, path, uri)
    if info.type == pafs.FileType.File:
        return fs, [_File(path, uri)]
    if info.type != pafs.FileType.Directory:
        raise _missing(fs, path, uri)
    found = sorted(
        i.path
        for i in _list(fs, path, uri)
        if i.is_file
        and not posixpath.basename(i.path).startswith((".", "_"))
        and i.path.lower().endswith(SUFFIXES[fmt])
    )
    if not found:
        raise _source_error(uri, f"the folder holds no {'/'.join(SUFFIXES[fmt])} files.")
    return fs, [_File(p, scheme + p) for p in found]


# Parsing ---------------------------------------------------------------------------------
#: One parsed record: (position from 1, fields or None, reject reason or None, raw text or None)
Record = tuple[int, dict[str, str | None] | None, str | None, str | None]


def _decode(data: bytes, uri: str, final: bool = True) -> str:
    try:
        return codecs.getincrementaldecoder("utf-8-sig")().decode(data, final=final)
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise _source_error(
            uri,
            f"bytes at offset {err.start} (line {line}) are not valid UTF-8.",
            "text sources must be UTF-8",
            _UTF8_FIX,
        ) from None


def _delimited(text: str, fmt: str) -> Iterator[tuple[list[str] | None, str, str | None]]:
    """(fields, raw text, csv error) per record; blank lines are not records."""
    consumed: list[str] = []

    def lines() -> Iterator[str]:
        for line in io.StringIO(text, newline=""):
            consumed.append(line)
            yield line

    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT))
    # TSV has no quoting (IANA text/tab-separated-values): a `"` is an ordinary character.
    if fmt == "tsv":
        reader = csv.reader(lines(), delimiter="\t", quoting=csv.QUOTE_NONE, strict=True)
    else:
        reader = csv.reader(lines(), strict=True)
    while True:
        try:
            fields: list[str] | None = next(reader)
            error = None
        except StopIteration:
            return
        except csv.Error as err:
            fields, error = None, str(err)
        raw = "".join(consumed).rstrip("\r\n")
        consumed.clear()
        if fields != []:
            yield fields, raw, error


def _first_record(
    records: Iterator[tuple[list[str] | None, str, str | None]], uri: str
) -> list[str]:
    """The header: the first record, which must parse (else every row after it is suspect)."""
    for fields, _raw, error in records:
        if fields is None:
            raise _source_error(uri, f"the header row cannot be parsed ({error}).")
        return fields
    return []


def _delimited_records(text: str, fmt: str, uri: str) -> tuple[list[str], list[Record]]:
    records = _delimited(text, fmt)
    header = _first_record(records, uri)
    out: list[Record] = []
    for number, (fields, raw, error) in enumerate(records, start=1):
        if fields is None:
            out.append((number, None, f"unparseable row: {error}", raw))
        elif len(fields) != len(header):
            reason = f"unparseable row: expected {len(header)} fields, got {len(fields)}"
            out.append((number, None, reason, raw))
        else:
            out.append((number, dict(zip(header, fields, strict=True)), None, None))
    return header, out


def _json_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _json_records(text: str) -> tuple[list[str], list[Record]]:
    keys: dict[str, None] = {}
    out: list[Record] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            out.append((number, None, f"unparseable row: invalid JSON ({err.msg})", line))
            continue
        if not isinstance(obj, dict):
            out.append((number, None, "unparseable row: not a JSON object", line))
            continue
        keys.update(dict.fromkeys(obj))
        out.append((number, {k: _json_value(v) for k, v in obj.items()}, None, None))
    return list(keys), out


def _parquet_table(fs: pafs.FileSystem, path: str) -> pa.Table:
    table = pq.read_table(path, filesystem=fs)
    columns = []
    for column in table.columns:
        try:
            columns.append(pc.cast(column, pa.string()))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # nested types
            columns.append(pa.array([_json_value(v) for v in column.to_pylist()], pa.string()))
    return pa.table(columns, names=table.column_names)


def _renamed(header: list[str], rename: dict[str, str], uri: str) -> list[str]:
    names = [rename.get(c, c) for c in header]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise _source_error(
            uri, f"duplicate column names {dupes} (after rename).", fix="fix the header or rename"
        )
    reserved = sorted(set(names) & set(META))
    if reserved:
        raise _source_error(uri, f"columns {reserved} are reserved for lineage.", fix="rename them")
    return names


def raw_schema(columns: list[str]) -> pa.Schema:
    """Every source column as a string, then the lineage columns."""
    fields = [pa.field(c, pa.string()) for c in columns]
    fields += [pa.field(SOURCE, pa.string()), pa.field(ROW, pa.int64())]
    return pa.schema([*fields, pa.field(REASON, pa.string()), pa.field(RAW, pa.string())])


def _read_text(
    fs: pafs.FileSystem, file: _File, fmt: str, rename: dict[str, str], columns: list[str]
) -> tuple[pa.Table, list[str]]:
    """(table, ignored columns) for a CSV, TSV or JSON-lines file."""
    with fs.open_input_stream(file.path) as stream:
        text = _decode(stream.read(), file.uri)
    if fmt == "json":
        header, records = _json_records(text)
    else:
        header, records = _delimited_records(text, fmt, file.uri)
    ignored = sorted(set(_renamed(header, rename, file.uri)) - set(columns))
    back = {new: old for old, new in rename.items()}  # card column -> name in the file
    data: dict[str, list[Any]] = {
        c: [None if f is None else f.get(back.get(c, c)) for _, f, _, _ in records] for c in columns
    }
    data[SOURCE] = [file.uri] * len(records)
    data[ROW] = [n for n, _, _, _ in records]
    data[REASON] = [r for _, _, r, _ in records]
    data[RAW] = [r for _, _, _, r in records]
    return pa.table(data, schema=raw_schema(columns)), ignored


def _read_parquet(
    fs: pafs.FileSystem, file: _File, rename: dict[str, str], columns: list[str]
) -> pa.Table:
    table = _parquet_table(fs, file.path)
    table = table.rename_columns(_renamed(table.column_names, rename, file.uri))
    n = table.num_rows
    data = {c: table[c] if c in table.column_names else pa.nulls(n, pa.string()) for c in columns}
    lineage = {SOURCE: [file.uri] * n, ROW: list(range(1, n + 1)), REASON: [None] * n}
    return pa.table({**data, **lineage, RAW: [None] * n}, schema=raw_schema(columns))


def parse_file(
    fs: pafs.FileSystem, file: _File, fmt: str, rename: dict[str, str], columns: list[str]
) -> tuple[dict[str, Any], pa.Table]:
    """(status, table in the raw schema) for one file. Runs in a Ray task; problems come back
    as data (``status["error"]``) because Ray does not re-raise our exception types."""
    status: dict[str, Any] = {"uri": file.uri, "rows": 0, "rejects": 0, "error": None}
    try:
        if fmt == "parquet":
            table = _read_parquet(fs, file, rename, columns)
        else:
            table, status["ignored_columns"] = _read_text(fs, file, fmt, rename, columns)
    except SourceError as err:
        status["error"] = [err.what, err.why, err.fix]
        return status, pa.table({})
    except (OSError, pa.ArrowInvalid) as err:
        status["error"] = [f"Data source {file.uri!r}: reading failed.", str(err), ""]
        return status, pa.table({})
    status["rows"] = table.num_rows
    status["rejects"] = table.num_rows - table[REASON].null_count
    return status, table


# Headers (in the driver, before any task runs) -------------------------------------------
def _header(fs: pafs.FileSystem, file: _File, fmt: str) -> list[str] | None:
    """Column names of one file, read from its first MiB; None for an empty file."""
    if fmt == "parquet":
        try:
            return list(pq.read_schema(file.path, filesystem=fs).names)
        except (OSError, pa.ArrowInvalid) as err:
            raise _source_error(file.uri, "is not a Parquet file.", str(err)) from None
    try:
        with fs.open_input_stream(file.path) as stream:
            head = stream.read(HEADER_BYTES)
            complete = len(head) < HEADER_BYTES or not stream.read(1)
    except OSError as err:
        raise _source_error(file.uri, "cannot be read.", str(err)) from None
    text = _decode(head, file.uri, final=complete)
    if not text.strip():
        return None
    if fmt == "json":
        if not complete:
            text = text.rsplit("\n", 1)[0]
        return _json_records(text)[0]
    return _first_record(_delimited(text, fmt), file.uri)


def source_columns(
    fs: pafs.FileSystem, files: list[_File], source: Source, card: DesignCard, fmt: str
) -> list[str]:
    """Union of the files' columns after rename; every file must hold the required ones."""
    required = [f.name for f in card.framing.inputs if f.required] + [card.framing.label.column]
    union: dict[str, None] = {}
    for file in files:
        header = _header(fs, file, fmt)
        if header is None:
            log.warning("%s is empty; it adds no rows", file.uri)
            continue
        names = _renamed(header, source.rename, file.uri)
        missing = [c for c in required if c not in names]
        if missing:
            raise _source_error(
                file.uri,
                f"required columns {missing} are missing.",
                f"the file has columns {header}",
                "map source columns to card names with data.sources[].rename, e.g. "
                "`rename: {tweet: text}`, or fix framing.inputs / framing.label.column",
            )
        union.update(dict.fromkeys(names))
    if not union:
        raise _source_error(source.uri, "every file is empty.")
    unused = sorted(k for k, v in source.rename.items() if v not in union)
    if unused:
        log.warning("%s: rename keys %s match no column", source.uri, unused)
    return list(union)


def read_source(source: Source, card: DesignCard, staging_dir: str | Path) -> ray.data.Dataset:
    """All rows of one source as a materialized Ray Dataset in the raw schema (see module doc).

    ``synthetic://`` sources are first written as CSV into ``staging_dir``.
    """
    import ray
    import ray.data

    from mlsd_ray.runtime import ensure_ray

    fmt = source.resolved_format
    if source.uri.startswith("synthetic://"):
        fs: pafs.FileSystem = pafs.LocalFileSystem()
        files = [_File(materialize(source.uri, str(staging_dir)), source.uri)]
    else:
        fs, files = list_files(source.uri, fmt)
    columns = source_columns(fs, files, source, card, fmt)
    ensure_ray()
    task = ray.remote(parse_file).options(num_returns=2)
    refs: list[Any] = [task.remote(fs, f, fmt, source.rename, columns) for f in files]
    statuses: list[dict[str, Any]] = ray.get([status for status, _ in refs])
    for status in statuses:
        if status["error"]:
            raise SourceError(*status["error"])
        if status.get("ignored_columns"):
            log.warning(
                "%s: JSON keys %s appear only after the first MiB and are ignored",
                status["uri"],
                status["ignored_columns"],
            )
    rows, rejects = sum(s["rows"] for s in statuses), sum(s["rejects"] for s in statuses)
    log.info("read %s: %d files, %d rows (%d unparseable)", source.uri, len(files), rows, rejects)
    return ray.data.from_arrow_refs([table for _, table in refs])
