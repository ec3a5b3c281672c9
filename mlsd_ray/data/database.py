"""PostgreSQL tables and queries as data sources, read with Ray Data's SQL reader.

A card names the database by URI and says what to read::

    sources:
      - uri: postgresql://postgres@127.0.0.1:5432/test
        table: clicks            # or: query: "SELECT ... ORDER BY id"
        order_by: [id]           # table only: a stable row order for lineage and the split

Before any Ray task runs, the driver connects once (5 s timeout), checks that the table or query
exists and returns the card's required columns, and raises ``SourceError`` naming the source
(with any password masked) and the fix. ``ray.data.read_sql`` then reads the rows with a
psycopg connection factory; the result is turned into the same raw schema file sources have:
every column a string, ``_source`` = ``<uri>#table=<name>`` or ``<uri>#query=<hash>``, ``_row``
= the position in the result from 1 (stable when the order is: use ``order_by`` or ORDER BY).

With ``shards: N`` (a table with ``order_by``) the table is read as N range shards of the first
``order_by`` column in parallel, each numbered by the database, so the rows and ``_row`` equal
one read's (``shard_statements``).

Passwords: put them in ``PGPASSWORD`` or ``~/.pgpass`` rather than in the card; a password in
the URI works but is masked in every message, summary and manifest.
"""

from __future__ import annotations

import hashlib
import logging
import math
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa

from mlsd_ray.data.raw import raw_schema, stringify
from mlsd_ray.data.verify import RAW, REASON, ROW, SOURCE
from mlsd_ray.errors import SourceError
from mlsd_ray.spec import Source

if TYPE_CHECKING:
    import ray.data

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5
ROWS_PER_BLOCK = 100_000


def redact(uri: str) -> str:
    """The URI with any password replaced by ``***``."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def lineage_uri(source: Source) -> str:
    """What rows of this source carry as ``_source``."""
    if source.table is not None:
        return f"{redact(source.uri)}#table={source.table}"
    digest = hashlib.sha256((source.query or "").encode()).hexdigest()[:12]
    return f"{redact(source.uri)}#query={digest}"


def _error(source: Source, what: str, why: str = "", fix: str = "") -> SourceError:
    why = " ".join(why.split())  # psycopg messages span lines
    return SourceError(f"Data source {lineage_uri(source)!r}: {what}", why, fix)


def connect(conninfo: str) -> Any:
    """A new psycopg connection (the factory ``read_sql`` calls in each read task)."""
    import psycopg

    return psycopg.connect(conninfo, connect_timeout=CONNECT_TIMEOUT_S)


def _conninfo(uri: str) -> str:
    return "postgresql://" + uri.split("://", 1)[1] if uri.startswith("postgres://") else uri


def build_sql(source: Source, conn: Any) -> str:
    """The SQL that reads the source: the query as given, or ``SELECT * FROM table``."""
    from psycopg import sql

    if source.query is not None:
        return source.query.strip().rstrip(";").strip()
    assert source.table is not None
    table = sql.Identifier(*source.table.split("."))
    statement = sql.SQL("SELECT * FROM {}").format(table)
    if source.order_by:
        keys = sql.SQL(", ").join(sql.Identifier(c) for c in source.order_by)
        statement = sql.SQL("{} ORDER BY {}").format(statement, keys)
    return str(statement.as_string(conn))


def probe(source: Source) -> tuple[str, list[str]]:
    """(SQL to read, column names), checked in the driver with one short connection."""
    import psycopg

    conninfo = _conninfo(source.uri)
    parts = urlsplit(conninfo)
    try:
        conn = connect(conninfo)
    except psycopg.Error as err:
        raise _error(
            source,
            "cannot connect to the database.",
            str(err).strip().replace(parts.password or "\0", "***"),
            f"check that PostgreSQL runs at {parts.hostname}:{parts.port or 5432}, that the "
            f"database {parts.path.lstrip('/')!r} and user {parts.username!r} exist, and the "
            "password (PGPASSWORD or ~/.pgpass)",
        ) from None
    try:
        statement = build_sql(source, conn)
        with conn.cursor() as cur:
            cur.execute(f"SELECT * FROM ({statement}) AS mlsd_probe LIMIT 0")  # type: ignore[arg-type]
            columns = [d.name for d in cur.description or []]
    except psycopg.errors.UndefinedTable as err:
        what = (
            f"table {source.table!r} does not exist."
            if source.table is not None
            else "the query names a table that does not exist."
        )
        raise _error(
            source, what, str(err).strip(), "create the table or fix data.sources[].table/query"
        ) from None
    except psycopg.errors.UndefinedColumn as err:
        raise _error(
            source,
            "a column in order_by or the query does not exist.",
            str(err).strip(),
            "fix data.sources[].order_by or the query",
        ) from None
    except psycopg.Error as err:
        raise _error(
            source, "the query failed.", str(err).strip(), "fix data.sources[].query"
        ) from None
    finally:
        conn.close()
    return statement, columns


# Shards: ranges of the first order_by column ----------------------------------------------
#: Column the shard queries add: the row's position in the whole ORDER BY (from 1).
ROW_NUMBER = "_mlsd_row_number"


def shard_statements(source: Source, conn: Any) -> list[str]:
    """SQL for each of ``source.shards`` shards of a table, in order: shard i holds the rows
    whose first ``order_by`` key lies between two cuts at its quantiles (nulls in the last,
    as ORDER BY puts them last), sorted by ``order_by``, each with ``_mlsd_row_number``, its
    position in the whole table's order. Together they hold exactly the rows, and the row
    numbers, of one ``SELECT * ... ORDER BY``; duplicate cuts (a skewed key) mean fewer shards.
    """
    from psycopg import sql

    assert source.table is not None and source.order_by
    table = sql.Identifier(*source.table.split("."))
    order = sql.SQL(", ").join(sql.Identifier(c) for c in source.order_by)
    key = sql.Identifier(source.order_by[0])
    fractions = [i / source.shards for i in range(1, source.shards)]
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "SELECT percentile_disc(%s::float8[]) WITHIN GROUP (ORDER BY {}) FROM {}"
            ).format(key, table),
            [fractions],
        )
        found = cur.fetchone()
        raw_cuts = [c for c in (found[0] if found and found[0] else []) if c is not None]
        cuts: list[Any] = []
        for c in raw_cuts:  # already in the database's order (its collation): only dedupe
            if not cuts or c != cuts[-1]:
                cuts.append(c)
        offsets = [0]
        if cuts:
            counts = sql.SQL(", ").join(
                sql.SQL("count(*) FILTER (WHERE {} <= {})").format(key, sql.Literal(c))
                for c in cuts
            )
            cur.execute(sql.SQL("SELECT {} FROM {}").format(counts, table))
            offsets += [int(n) for n in cur.fetchone()]
    statements = []
    for i in range(len(cuts) + 1):
        parts = []
        if i > 0:
            parts.append(sql.SQL("{} > {}").format(key, sql.Literal(cuts[i - 1])))
        if i < len(cuts):
            parts.append(sql.SQL("{} <= {}").format(key, sql.Literal(cuts[i])))
        where = sql.SQL(" AND ").join(parts) if parts else sql.SQL("TRUE")
        if i == len(cuts) and cuts:
            where = sql.SQL("({}) OR {} IS NULL").format(where, key)
        statement = sql.SQL(
            "SELECT *, row_number() OVER (ORDER BY {order}) + {offset} AS {row} "
            "FROM {table} WHERE {where} ORDER BY {order}"
        ).format(
            order=order,
            offset=sql.Literal(offsets[i]),
            row=sql.Identifier(ROW_NUMBER),
            table=table,
            where=where,
        )
        statements.append(str(statement.as_string(conn)))
    return statements


def plan_shards(source: Source) -> list[str]:
    """``shard_statements`` on a short connection of the driver."""
    import psycopg

    conn = connect(_conninfo(source.uri))
    try:
        return shard_statements(source, conn)
    except psycopg.Error as err:
        raise _error(
            source,
            f"cannot cut the table into {source.shards} shards.",
            str(err).strip(),
            "check data.sources[].order_by (its first column must be sortable), or set shards: 1",
        ) from None
    finally:
        conn.close()


def to_raw(
    block: pa.Table, offset: int, origin: str, names: list[str], columns: list[str]
) -> pa.Table:
    """One block of query results in the raw schema; ``names`` are the renamed result
    columns, ``columns`` the source's output columns."""
    n = block.num_rows
    numbers = None
    if ROW_NUMBER in block.column_names:  # a shard: the database numbered the rows
        numbers = block[ROW_NUMBER].cast(pa.int64())
        block = block.drop_columns([ROW_NUMBER])
    strings = stringify(block) if block.num_columns else pa.table({})
    if strings.num_columns:
        strings = strings.rename_columns(names)
    data: dict[str, Any] = {
        c: strings[c] if c in strings.column_names else pa.nulls(n, pa.string()) for c in columns
    }
    data[SOURCE] = pa.array([origin] * n, pa.string())
    if numbers is not None:
        data[ROW] = numbers
    else:
        data[ROW] = pa.array(range(offset + 1, offset + n + 1), pa.int64())
    data[REASON] = pa.nulls(n, pa.string())
    data[RAW] = pa.nulls(n, pa.string())
    return pa.table(data, schema=raw_schema(columns))


def _num_rows(block: pa.Table) -> int:
    return int(block.num_rows)


def read_database(
    source: Source, names: list[str], columns: list[str], statement: str
) -> ray.data.Dataset:
    """Read with ``ray.data.read_sql`` and convert to the raw schema, materialized."""
    import ray
    import ray.data

    origin = lineage_uri(source)
    factory = partial(connect, _conninfo(source.uri))
    # One read task and one block per statement: Ray Data would otherwise split a result into
    # ~200 tiny blocks, and every later pass pays per block. Its own sharding (shard_keys)
    # computes MOD(ABS(MD5(key)), n), which PostgreSQL rejects (md5 returns text), and then
    # quietly reads in one task; ranges of the ORDER BY key also keep the row numbers.
    statements = plan_shards(source) if source.shards > 1 else [statement]
    try:
        parts = [ray.data.read_sql(s, factory, override_num_blocks=1) for s in statements]
        ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
        refs = ds.to_arrow_refs()
        counts = ray.get([ray.remote(_num_rows).remote(r) for r in refs])
    except Exception as err:  # Ray wraps psycopg errors from the read task
        raise _error(
            source,
            "reading failed.",
            str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__,
            "check the database and data.sources[].table/query",
        ) from None
    offsets = [sum(counts[:i]) for i in range(len(counts))]
    convert = ray.remote(to_raw)
    out: list[Any] = [
        convert.remote(r, off, origin, names, columns) for r, off in zip(refs, offsets, strict=True)
    ]
    log.info(
        "read %s: %d rows in %d blocks (%d shards)", origin, sum(counts), len(refs), len(statements)
    )
    if not out:
        return ray.data.from_arrow(raw_schema(columns).empty_table())
    ds = ray.data.from_arrow_refs(out)
    total = sum(counts)
    if total > ROWS_PER_BLOCK:  # spread verification over the cluster's CPUs
        ds = ds.repartition(math.ceil(total / ROWS_PER_BLOCK)).materialize()
    return ds
