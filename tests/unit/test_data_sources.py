"""File discovery and parsing, called in-process (no Ray): what each Ray task would do."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from mlsd_ray.data.sources import list_files, parse_file, source_columns
from mlsd_ray.errors import SourceError
from mlsd_ray.spec import DesignCard, Source, card_from_dict

CARD: DesignCard = card_from_dict(
    {
        "name": "t",
        "requirements": {"business_objective": "test"},
        "framing": {
            "ml_objective": "test",
            "inputs": [{"name": "text", "type": "text"}],
            "label": {"column": "label", "mapping": {"0": 1, "1": 1, "2": 0}},
        },
        "data": {"sources": [{"uri": "x.csv"}]},
        "models": {
            "baseline": {"name": "b", "kind": "majority"},
            "candidates": [{"name": "c", "kind": "logreg"}],
        },
    }
)
RENAME = {"tweet": "text", "class": "label"}


def parse(path: Path, fmt: str = "csv", rename: dict[str, str] | None = None) -> pa.Table:
    """Driver-side header check, then the per-file parse, as read_source does them."""
    source = Source(uri=str(path), format=fmt, rename=RENAME if rename is None else rename)  # type: ignore[arg-type]
    fs, files = list_files(source.uri, fmt)
    columns = source_columns(fs, files, source, CARD, fmt)
    status, table = parse_file(fs, files[0], fmt, source.rename, columns)
    if status["error"]:
        raise SourceError(*status["error"])
    assert status["rows"] == table.num_rows
    return table


def test_quoted_newlines_and_broken_rows(tmp_path: Path) -> None:
    path = tmp_path / "tweets.csv"
    path.write_text(
        'id,class,tweet\n1,2,"line one\nline two"\n2,0,"has ""quotes"", commas"\n'
        "3,1,too,many,fields\n\n4,2,last\n",
        encoding="utf-8",
    )
    table = parse(path).to_pylist()
    assert [r["text"] for r in table] == [
        "line one\nline two",
        'has "quotes", commas',
        None,
        "last",
    ]
    assert [r["_row"] for r in table] == [1, 2, 3, 4]
    broken = table[2]
    assert broken["_reason"] == "unparseable row: expected 3 fields, got 5"
    assert broken["_raw"] == "3,1,too,many,fields"
    assert {r["_source"] for r in table} == {str(path)}
    assert all(r["_reason"] is None for i, r in enumerate(table) if i != 2)


def test_bad_quoting_is_a_reject_not_a_failure(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('class,tweet\n2,"fine"\n2,"bad"quote\n0,"never closed\n1,x\n')
    table = parse(path).to_pylist()
    assert [r["text"] for r in table] == ["fine", None, None]
    assert table[1]["_reason"].startswith("unparseable row:")
    assert table[2]["_raw"] == '0,"never closed\n1,x'  # the rest of the file, kept


def test_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffclass,tweet\r\n2,héllo\r\n".encode())
    assert parse(path).to_pylist()[0]["text"] == "héllo"


def test_undecodable_bytes_raise_source_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("class,tweet\n2,caf\xe9\n".encode("latin-1"))
    with pytest.raises(SourceError, match=r"latin1\.csv.*line 2.*UTF-8.*iconv"):
        parse(path)


def test_missing_required_column_names_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("class,body\n2,hello\n")
    with pytest.raises(SourceError, match=r"x\.csv.*\['text'\] are missing.*rename"):
        parse(path)


def test_tsv_has_no_quoting(tmp_path: Path) -> None:
    path = tmp_path / "sms.tsv"
    path.write_text('label\ttext\n0\t"quoted" start\n2\tsays "hi"\n', encoding="utf-8")
    table = parse(path, "tsv", rename={}).to_pylist()
    assert [r["text"] for r in table] == ['"quoted" start', 'says "hi"']


def test_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "posts.jsonl"
    lines = [
        json.dumps({"text": "a", "label": 2, "meta": {"k": 1}}),
        "{not json",
        json.dumps([1, 2]),
        json.dumps({"text": "b", "label": True}),
    ]
    path.write_text("\n".join(lines) + "\n")
    table = parse(path, "json", rename={}).to_pylist()
    assert [(r["text"], r["label"], r["_row"]) for r in table] == [
        ("a", "2", 1),
        (None, None, 2),
        (None, None, 3),
        ("b", "true", 4),
    ]
    assert table[0]["meta"] == '{"k": 1}'
    assert table[1]["_reason"].startswith("unparseable row: invalid JSON")
    assert table[2]["_reason"] == "unparseable row: not a JSON object"


def test_parquet_columns_become_strings(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"tweet": ["a", "b"], "class": [0, 2], "score": [0.5, None]}), path)
    table = parse(path, "parquet")
    assert table.column("label").to_pylist() == ["0", "2"]
    assert table.column("score").to_pylist() == ["0.5", None]
    assert table.schema.field("score").type == pa.string()


def test_globs_folders_and_missing_paths(tmp_path: Path) -> None:
    for name in ("a.csv", "b.csv", "_SUCCESS", "notes.txt"):
        (tmp_path / name).write_text("class,tweet\n2,x\n")
    _, files = list_files(str(tmp_path), "csv")
    assert [Path(f.path).name for f in files] == ["a.csv", "b.csv"]
    assert files[0].uri == str(tmp_path / "a.csv")
    _, files = list_files(str(tmp_path / "b*.csv"), "csv")
    assert [Path(f.path).name for f in files] == ["b.csv"]
    missing = str(tmp_path / "nope.csv")
    with pytest.raises(SourceError, match=r"nope\.csv.*no such file"):
        list_files(missing, "csv")
    with pytest.raises(SourceError, match=r"zz\*\.csv.*no file matches"):
        list_files(str(tmp_path / "zz*.csv"), "csv")
    with pytest.raises(SourceError, match=r"no \.parquet/\.pq files"):
        list_files(str(tmp_path), "parquet")


def test_columns_union_across_files_and_empty_files(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("class,tweet\n2,x\n")
    (tmp_path / "b.csv").write_text("tweet,class,extra\ny,0,e\n")
    (tmp_path / "c.csv").write_text("")
    source = Source(uri=str(tmp_path), rename=RENAME, format="csv")
    fs, files = list_files(source.uri, "csv")
    columns = source_columns(fs, files, source, CARD, "csv")
    assert columns == ["label", "text", "extra"]
    rows = [parse_file(fs, f, "csv", RENAME, columns)[1].to_pylist() for f in files]
    assert rows[0][0]["extra"] is None and rows[1][0]["extra"] == "e"
    assert rows[2] == []
    assert isinstance(fs, pafs.LocalFileSystem)


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("plain.csv", "tweet,class,extra\nhello,2,a\n,0,\nbye ,1, b \n"),
        ("crlf.csv", "tweet,class\r\nhello,2\r\n\r\nworld,0"),
        ("blank_lines.csv", "tweet,class\n\nhello,2\n\n\nworld,0\n\n"),
        ("wrong_width.csv", "tweet,class\nhello,2\ntoo,many,fields\nok,0\n"),
        ("quoted.csv", 'tweet,class\n"a, b",2\nc,0\n'),
        ("tabs.tsv", 'tweet\tclass\n"quoted" text\t2\nx\t0\n'),
        ("bom.csv", "\ufefftweet,class\nhéllo,2\n"),
        ("header_only.csv", "tweet,class\n"),
    ],
)
def test_arrow_fast_path_parses_like_the_csv_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, body: str
) -> None:
    from mlsd_ray.data import sources

    path = tmp_path / name
    path.write_bytes(body.encode("utf-8"))
    fmt = "tsv" if name.endswith(".tsv") else "csv"
    fast = parse(path, fmt)
    text = body.lstrip("\ufeff")
    took_fast = sources._fast_delimited(text, fmt, sources._File(name, name), {}, ["tweet"])
    assert (took_fast is not None) == (name not in ("wrong_width.csv", "quoted.csv"))
    monkeypatch.setattr(sources, "_fast_delimited", lambda *a, **k: None)
    slow = parse(path, fmt)
    assert fast.equals(slow), (fast.to_pylist(), slow.to_pylist())


def test_unreadable_parquet_and_unknown_encoding_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"this is not parquet")
    with pytest.raises(SourceError, match=r"broken\.parquet.*is not a Parquet file.*Fix: check"):
        parse(path, "parquet")
    csv_path = tmp_path / "x.csv"
    csv_path.write_text("class,tweet\n2,x\n")
    source = Source(uri=str(csv_path), rename=RENAME, encoding="klingon")
    fs, files = list_files(source.uri, "csv")
    with pytest.raises(SourceError, match=r"x\.csv.*unknown encoding 'klingon'"):
        source_columns(fs, files, source, CARD, "csv")


def test_hive_partition_folders_become_columns(tmp_path: Path) -> None:
    for day in ("2024-01-01", "2024-01-02"):
        folder = tmp_path / f"day={day}" / "kind=a"
        folder.mkdir(parents=True)
        (folder / "part.csv").write_text("class,tweet\n2,x\n0,y\n")
    source = Source(uri=str(tmp_path), rename=RENAME, format="csv")
    fs, files = list_files(source.uri, "csv")
    assert [f.partitions for f in files] == [
        (("day", "2024-01-01"), ("kind", "a")),
        (("day", "2024-01-02"), ("kind", "a")),
    ]
    columns = source_columns(fs, files, source, CARD, "csv")
    assert columns == ["label", "text", "day", "kind"]
    rows = parse_file(fs, files[1], "csv", RENAME, columns)[1].to_pylist()
    assert [(r["text"], r["day"], r["kind"]) for r in rows] == [
        ("x", "2024-01-02", "a"),
        ("y", "2024-01-02", "a"),
    ]
