"""Read a card's data source into a Ray Dataset without ever losing a row silently.

Why not ``ray.data.read_csv``: it fails a whole file on one broken row and guesses column types.
Here every file is parsed inside its own Ray task with Python's ``csv`` module (quoted fields may
span lines, as in the Davidson tweets), every column is kept as a string, and a row that cannot
be parsed becomes a row with a ``_reason`` and its ``_raw`` text, which ETL quarantines.

Problems with the source itself (missing file or bucket, a required column absent, bytes that
are not in the source's ``encoding``, an unreachable database) raise ``SourceError`` naming the
URI and the fix, before any row is verified.

Folders are read recursively; ``key=value`` folder names between the source folder and a file
(Hive partitioning) become string columns of that file's rows. Database sources are read by
``mlsd_ray.data.database`` (Ray Data's SQL reader), application logs of impressions and clicks
are joined into labelled rows by ``mlsd_ray.data.events``.

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
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mlsd_ray import storage
from mlsd_ray.data.raw import json_value, raw_schema, stringify
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
    #: (column, value) from ``key=value`` folder names below the source folder
    partitions: tuple[tuple[str, str | None], ...] = ()


def _partitions(base: str, path: str) -> tuple[tuple[str, str | None], ...]:
    """``base/day=2024-01-02/kind=a/x.csv`` -> (("day", "2024-01-02"), ("kind", "a")).
    Values are percent-decoded and ``__HIVE_DEFAULT_PARTITION__`` is null, as Arrow, Spark
    and mlsd-ray's own partitioned splits write them."""
    from urllib.parse import unquote

    rel = path[len(base.rstrip("/")) + 1 :] if path.startswith(base.rstrip("/") + "/") else ""
    out: list[tuple[str, str | None]] = []
    for part in rel.split("/")[:-1]:
        key, sep, value = part.partition("=")
        if sep and key:
            out.append((key, None if value == "__HIVE_DEFAULT_PARTITION__" else unquote(value)))
    return tuple(out)


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
        return fs, [_File(p, scheme + p, _partitions(base, p)) for p in found]
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
    return fs, [_File(p, scheme + p, _partitions(path, p)) for p in found]


# Parsing ---------------------------------------------------------------------------------
#: One parsed record: (position from 1, fields (a list in header order for CSV/TSV, a dict for
#: JSON) or None, reject reason or None, raw text or None)
Record = tuple[int, list[str] | dict[str, str | None] | None, str | None, str | None]


def _decoder(encoding: str, uri: str) -> codecs.IncrementalDecoder:
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise _source_error(
            uri,
            f"unknown encoding {encoding!r}.",
            fix="set data.sources[].encoding to a Python codec name, e.g. utf-8 or latin-1",
        ) from None
    name = "utf-8-sig" if info.name == "utf-8" else info.name  # drop a byte-order mark
    return codecs.getincrementaldecoder(name)()


def _decode(data: bytes, uri: str, final: bool = True, encoding: str = "utf-8") -> str:
    try:
        return _decoder(encoding, uri).decode(data, final=final)
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        utf8 = codecs.lookup(encoding).name == "utf-8"
        raise _source_error(
            uri,
            f"bytes at offset {err.start} (line {line}) are not valid {encoding.upper()}.",
            f"the source is read as {encoding} (data.sources[].encoding)",
            _UTF8_FIX + ", or set `encoding: latin-1` (or the file's encoding) on the source"
            if utf8
            else "set data.sources[].encoding to the file's encoding",
        ) from None


def _delimited(text: str, fmt: str) -> Iterator[tuple[list[str] | None, str | None, str | None]]:
    """(fields, raw text, csv error) per record; blank lines are not records. The raw text is
    kept only for records that failed or whose width differs from the first record's."""
    lines = io.StringIO(text, newline="").readlines()
    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT))
    # TSV has no quoting (IANA text/tab-separated-values): a `"` is an ordinary character.
    if fmt == "tsv":
        reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE, strict=True)
    else:
        reader = csv.reader(lines, strict=True)
    seen = 0  # lines consumed before this record
    width: int | None = None
    while True:
        try:
            fields: list[str] | None = next(reader)
            error = None
        except StopIteration:
            return
        except csv.Error as err:
            fields, error = None, str(err)
        raw = None
        if fields is None or (width is not None and fields and len(fields) != width):
            raw = "".join(lines[seen : reader.line_num]).rstrip("\r\n")
        seen = reader.line_num
        if fields != []:
            if width is None and fields is not None:
                width = len(fields)
            yield fields, raw, error


def _first_record(
    records: Iterator[tuple[list[str] | None, str | None, str | None]], uri: str
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
            out.append((number, fields, None, None))
    return header, out


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
        out.append((number, {k: json_value(v) for k, v in obj.items()}, None, None))
    return list(keys), out


def _parquet_table(fs: pafs.FileSystem, path: str) -> pa.Table:
    return stringify(pq.read_table(path, filesystem=fs))


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


def _read_text(
    fs: pafs.FileSystem,
    file: _File,
    fmt: str,
    rename: dict[str, str],
    columns: list[str],
    encoding: str = "utf-8",
) -> tuple[pa.Table, list[str]]:
    """(table, ignored columns) for a CSV, TSV or JSON-lines file."""
    with fs.open_input_stream(file.path) as stream:
        text = _decode(stream.read(), file.uri, encoding=encoding)
    if fmt != "json":
        fast = _fast_delimited(text, fmt, file, rename, columns)
        if fast is not None:
            return fast
    if fmt == "json":
        header, records = _json_records(text)
    else:
        header, records = _delimited_records(text, fmt, file.uri)
    file_columns = list(header)
    header = _with_partitions(header, file)
    ignored = sorted(set(_renamed(header, rename, file.uri)) - set(columns))
    back = {new: old for old, new in rename.items()}  # card column -> name in the file
    parts = dict(file.partitions)
    fields = [f for _, f, _, _ in records]
    data: dict[str, list[Any]] = {}
    for c in columns:
        name = back.get(c, c)
        if fmt == "json":
            data[c] = [None if f is None else f.get(name, parts.get(name)) for f in fields]  # type: ignore[union-attr]
        elif name in file_columns:
            k = file_columns.index(name)
            data[c] = [None if f is None else f[k] for f in fields]  # type: ignore[index]
        else:  # a partition column, or a column only other files have
            value = parts.get(name)
            data[c] = [None if f is None else value for f in fields]
    data[SOURCE] = [file.uri] * len(records)
    data[ROW] = [n for n, _, _, _ in records]
    data[REASON] = [r for _, _, r, _ in records]
    data[RAW] = [r for _, _, _, r in records]
    return pa.table(data, schema=raw_schema(columns)), ignored


def _fast_delimited(
    text: str, fmt: str, file: _File, rename: dict[str, str], columns: list[str]
) -> tuple[pa.Table, list[str]] | None:
    """The same table as the ``csv`` module path, parsed by Arrow's CSV reader, for files where
    the two cannot differ: no quote character at all (TSV never quotes), the header on the
    first line, every record with the header's width. None = use the ``csv`` module path."""
    import pyarrow.csv as pacsv

    if not text or text[0] in "\r\n" or (fmt == "csv" and '"' in text):
        return None
    first = text.split("\n", 1)[0].rstrip("\r")
    header = first.split("\t" if fmt == "tsv" else ",")
    if len(set(header)) != len(header):
        return None
    try:
        table = pacsv.read_csv(
            io.BytesIO(text.encode("utf-8")),
            read_options=pacsv.ReadOptions(
                column_names=[f"c{i}" for i in range(len(header))], skip_rows=1
            ),
            parse_options=pacsv.ParseOptions(
                delimiter="\t" if fmt == "tsv" else ",",
                quote_char=False,
                ignore_empty_lines=True,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={f"c{i}": pa.string() for i in range(len(header))},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None  # a row of another width, say: the csv path words the reason
    full = _with_partitions(header, file)
    ignored = sorted(set(_renamed(full, rename, file.uri)) - set(columns))
    back = {new: old for old, new in rename.items()}
    parts = dict(file.partitions)
    n = table.num_rows
    data: dict[str, Any] = {}
    for c in columns:
        name = back.get(c, c)
        if name in header:
            data[c] = table.column(header.index(name))
        else:
            value = parts.get(name)
            data[c] = (
                pa.array([value] * n, pa.string())
                if value is not None
                else pa.nulls(n, pa.string())
            )
    data[SOURCE] = pa.array([file.uri] * n, pa.string())
    data[ROW] = pa.array(np.arange(1, n + 1), pa.int64())
    data[REASON] = pa.nulls(n, pa.string())
    data[RAW] = pa.nulls(n, pa.string())
    return pa.table(data, schema=raw_schema(columns)), ignored


def _with_partitions(header: list[str], file: _File) -> list[str]:
    """File columns, then partition columns the file does not hold itself."""
    return header + [k for k, _ in file.partitions if k not in header]


def _read_parquet(
    fs: pafs.FileSystem, file: _File, rename: dict[str, str], columns: list[str]
) -> pa.Table:
    table = _parquet_table(fs, file.path)
    for key, value in file.partitions:
        if key not in table.column_names:
            table = table.append_column(key, pa.array([value] * table.num_rows, pa.string()))
    table = table.rename_columns(_renamed(table.column_names, rename, file.uri))
    n = table.num_rows
    data = {c: table[c] if c in table.column_names else pa.nulls(n, pa.string()) for c in columns}
    lineage = {SOURCE: [file.uri] * n, ROW: list(range(1, n + 1)), REASON: [None] * n}
    return pa.table({**data, **lineage, RAW: [None] * n}, schema=raw_schema(columns))


def parse_file(
    fs: pafs.FileSystem,
    file: _File,
    fmt: str,
    rename: dict[str, str],
    columns: list[str],
    encoding: str = "utf-8",
) -> tuple[dict[str, Any], pa.Table]:
    """(status, table in the raw schema) for one file. Runs in a Ray task; problems come back
    as data (``status["error"]``) because Ray does not re-raise our exception types."""
    status: dict[str, Any] = {"uri": file.uri, "rows": 0, "rejects": 0, "error": None}
    try:
        if fmt == "parquet":
            table = _read_parquet(fs, file, rename, columns)
        else:
            table, status["ignored_columns"] = _read_text(fs, file, fmt, rename, columns, encoding)
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
def _header(
    fs: pafs.FileSystem, file: _File, fmt: str, encoding: str = "utf-8"
) -> list[str] | None:
    """Column names of one file (partition columns last); None for an empty file."""
    header = _file_header(fs, file, fmt, encoding)
    return None if header is None else _with_partitions(header, file)


def _file_header(fs: pafs.FileSystem, file: _File, fmt: str, encoding: str) -> list[str] | None:
    """Column names of one file, read from its first MiB; None for an empty file."""
    if fmt == "parquet":
        try:
            return list(pq.read_schema(file.path, filesystem=fs).names)
        except (OSError, pa.ArrowInvalid) as err:
            raise _source_error(
                file.uri,
                "is not a Parquet file.",
                str(err),
                "check the file, or set data.sources[].format if it is CSV or JSON",
            ) from None
    try:
        with fs.open_input_stream(file.path) as stream:
            head = stream.read(HEADER_BYTES)
            complete = len(head) < HEADER_BYTES or not stream.read(1)
    except OSError as err:
        raise _source_error(file.uri, "cannot be read.", str(err)) from None
    text = _decode(head, file.uri, final=complete, encoding=encoding)
    if not text.strip():
        return None
    if fmt == "json":
        if not complete:
            text = text.rsplit("\n", 1)[0]
        return _json_records(text)[0]
    return _first_record(_delimited(text, fmt), file.uri)


def required_columns(source: Source, card: DesignCard) -> list[str]:
    """Columns (card names, after rename) that every file or result of ``source`` must hold."""
    inputs = [f.name for f in card.framing.inputs if f.required]
    split = card.data.split
    carried = [c for c in (split.time_column, split.group_column) if c]
    if source.events is not None:  # the label comes from the join
        ev = source.events
        needed = [*inputs, *carried, ev.type_column, ev.time_column, *ev.key]
    else:
        needed = [*inputs, *carried, card.framing.label.column]
    return list(dict.fromkeys(needed))


def check_columns(names: list[str], required: list[str], uri: str, shown: list[str]) -> None:
    missing = [c for c in required if c not in names]
    if missing:
        raise _source_error(
            uri,
            f"required columns {missing} are missing.",
            f"the source has columns {shown}",
            "map source columns to card names with data.sources[].rename, e.g. "
            "`rename: {tweet: text}`, or fix framing.inputs / framing.label.column",
        )


def source_columns(
    fs: pafs.FileSystem, files: list[_File], source: Source, card: DesignCard, fmt: str
) -> list[str]:
    """Union of the files' columns after rename; every file must hold the required ones."""
    required = required_columns(source, card)
    union: dict[str, None] = {}
    for file in files:
        header = _header(fs, file, fmt, source.encoding)
        if header is None:
            log.warning("%s is empty; it adds no rows", file.uri)
            continue
        names = _renamed(header, source.rename, file.uri)
        check_columns(names, required, file.uri, header)
        union.update(dict.fromkeys(names))
    if not union:
        raise _source_error(source.uri, "every file is empty.")
    unused = sorted(k for k, v in source.rename.items() if v not in union)
    if unused:
        log.warning("%s: rename keys %s match no column", source.uri, unused)
    return list(union)


def describe(source: Source) -> str:
    """The source as shown in summaries and manifests (database passwords masked)."""
    if source.is_database:
        from mlsd_ray.data.database import lineage_uri

        return lineage_uri(source)
    return source.uri


def read_source(source: Source, card: DesignCard, staging_dir: str | Path) -> ray.data.Dataset:
    """All rows of one source as a materialized Ray Dataset in the raw schema (see module doc).

    ``synthetic://`` sources are first written as CSV into ``staging_dir``; database sources go
    through ``ray.data.read_sql``; event logs come out joined into labelled impressions.
    """
    return read_source_stats(source, card, staging_dir)[0]


def read_source_stats(
    source: Source, card: DesignCard, staging_dir: str | Path
) -> tuple[ray.data.Dataset, dict[str, Any]]:
    """``read_source`` plus what the manifest records: files (URI, size) or the SQL read, and
    for event logs the join's counts (``events``)."""
    if source.is_database:
        ds, info = _read_database(source, card)
    else:
        ds, info = _read_files(source, card, staging_dir)
    if source.events is not None:
        from mlsd_ray.data.events import join_events

        ds, info["events"] = join_events(ds, source, card)
    return ds, info


def _read_database(source: Source, card: DesignCard) -> tuple[ray.data.Dataset, dict[str, Any]]:
    from mlsd_ray.data import database
    from mlsd_ray.runtime import ensure_ray

    statement, header = database.probe(source)
    origin = database.lineage_uri(source)
    names = _renamed(header, source.rename, origin)
    check_columns(names, required_columns(source, card), origin, header)
    ensure_ray()
    ds = database.read_database(source, names, names, statement)
    info: dict[str, Any] = {"uri": origin, "kind": "database", "sql": statement}
    if source.shards > 1:
        info["shards"] = source.shards
    return ds, info


@dataclass(frozen=True)
class FilePlan:
    """What the driver knows of a file source before any task runs: its files and columns."""

    source: Source
    fs: pafs.FileSystem
    files: list[_File]
    columns: list[str]
    fmt: str


def plan_files(source: Source, card: DesignCard, staging_dir: str | Path) -> FilePlan:
    """List a file source and check every file's header (in the driver, so a missing column
    fails before any task starts)."""
    fmt = source.resolved_format
    fs: pafs.FileSystem
    if source.uri.startswith("synthetic://"):
        fs, files = _stage_synthetic(source.uri, str(staging_dir))
    else:
        fs, files = list_files(source.uri, fmt)
    return FilePlan(source, fs, files, source_columns(fs, files, source, card, fmt), fmt)


def _parse_then(
    fs: pafs.FileSystem,
    file: _File,
    fmt: str,
    rename: dict[str, str],
    columns: list[str],
    encoding: str,
    then: Callable[[pa.Table], pa.Table] | None,
) -> tuple[dict[str, Any], pa.Table]:
    """``parse_file``, then ``then`` on its table in the same task (ETL verifies there: one
    task and one object-store copy per file instead of two)."""
    status, table = parse_file(fs, file, fmt, rename, columns, encoding)
    if then is not None and status["error"] is None:
        table = then(table)
    return status, table


def read_files(
    plan: FilePlan, card: DesignCard, then: Callable[[pa.Table], pa.Table] | None = None
) -> tuple[ray.data.Dataset, dict[str, Any]]:
    """One Ray task per file parses it (and applies ``then`` to its rows when given); a
    materialized dataset of one block per file, and what the manifest records."""
    import ray
    import ray.data

    from mlsd_ray.runtime import ensure_ray

    source, fs, files = plan.source, plan.fs, plan.files
    ensure_ray()
    task = ray.remote(_parse_then).options(num_returns=2, **card.stages.etl.ray_options())
    refs: list[Any] = [
        task.remote(fs, f, plan.fmt, source.rename, plan.columns, source.encoding, then)
        for f in files
    ]
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
    info: dict[str, Any] = {
        "uri": source.uri,
        "kind": "synthetic" if source.uri.startswith("synthetic://") else "files",
        "format": plan.fmt,
        "files": [
            {"uri": f.uri, "rows": s["rows"], "bytes": _size(fs, f.path)}
            for f, s in zip(files, statuses, strict=True)
        ],
    }
    return ray.data.from_arrow_refs([table for _, table in refs]), info


def _read_files(
    source: Source, card: DesignCard, staging_dir: str | Path
) -> tuple[ray.data.Dataset, dict[str, Any]]:
    return read_files(plan_files(source, card, staging_dir), card)


def _stage_synthetic(uri: str, staging: str) -> tuple[pafs.FileSystem, list[_File]]:
    """A synthetic data set written where every parse task can read it. With an ``s3://``
    workdir that is the bucket's staging folder: a file on the driver's disk would be missing
    on the other nodes of a cluster (found by the multi-node test)."""
    if not storage.is_remote(staging):
        return pafs.LocalFileSystem(), [_File(materialize(uri, staging), uri)]
    with tempfile.TemporaryDirectory() as tmp:
        local = materialize(uri, tmp)
        fs, path = storage.filesystem(storage.join(staging, Path(local).name))
        pafs.copy_files(local, path, destination_filesystem=fs)
    return fs, [_File(path, uri)]


def _size(fs: pafs.FileSystem, path: str) -> int | None:
    try:
        size = fs.get_file_info(path).size
    except OSError:
        return None
    return None if size is None else int(size)
