"""The command line's reads: top pairs, the CSV exports (pairs, decisions), ad-hoc SQL."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import duckdb

from store import decisions
from store.sql import records

TOP_COLUMNS = ("score", "path_a", "class_a", "path_b", "class_b", "first_seen", "last_seen")


def top_pairs(
    con: duckdb.DuckDBPyConnection, limit: int, include_reviewed: bool = False
) -> list[dict[str, Any]]:
    where = "" if include_reviewed else "WHERE decision IS NULL"
    return records(
        con,
        f"""SELECT {", ".join(TOP_COLUMNS)} FROM pairs {where}
            ORDER BY score DESC, path_a, path_b LIMIT ?""",
        [limit],
    )


def csv_writer(out: TextIO) -> Any:
    """The one CSV writer of every command (export, top, sql).

    csv quotes a field that holds the delimiter, a quote or a character of the line
    terminator. With RFC 4180's "\r\n" that covers every \r and every \n in a name; with
    "\n" alone a bare \r went unquoted and readers split the row there. Files written
    with it must be opened with newline="" (csv's rule), so that \r\n is not translated.
    """
    return csv.writer(out, lineterminator="\r\n")


def export_csv(con: duckdb.DuckDBPyConnection, out: TextIO) -> int:
    """path_a,path_b,score rows like the original tool's CSV, best first.

    Quoting is csv's: names with commas, quotes, \r or \n survive a round trip.
    """
    writer = csv_writer(out)
    writer.writerow(["path_a", "path_b", "score"])
    count = 0
    cur = con.execute("SELECT path_a, path_b, score FROM pairs ORDER BY score DESC, path_a, path_b")
    while rows := cur.fetchmany(10_000):
        for a, b, score in rows:
            writer.writerow([a, b, f"{score:.6f}"])
            count += 1
    return count


def run_sql(con: duckdb.DuckDBPyConnection, query: str) -> tuple[list[str], Iterator[tuple]]:
    cur = con.execute(query)
    columns = [d[0] for d in cur.description] if cur.description else []

    def rows() -> Iterator[tuple]:
        while batch := cur.fetchmany(10_000):
            yield from batch

    return columns, rows()


DECISION_COLUMNS = decisions.COLUMNS


def export_decisions(con: duckdb.DuckDBPyConnection, out: TextIO) -> int:
    """The decisions table as CSV, a backup: decisions are keyed by content, so no scan of
    the files can rebuild them. The table's own columns come first, so that

        INSERT OR REPLACE INTO decisions
        SELECT hash_a, hash_b, decision, note, decided_by, decided_at FROM read_csv('FILE')

    restores them into any store; path_a and path_b (one current path of each content,
    empty when none is stored) are for the reader.
    """
    writer = csv_writer(out)
    writer.writerow([*DECISION_COLUMNS, "path_a", "path_b"])
    cur = con.execute(
        f"""SELECT {", ".join("d." + c for c in DECISION_COLUMNS)},
                   (SELECT min(path) FROM files WHERE hash = d.hash_a),
                   (SELECT min(path) FROM files WHERE hash = d.hash_b)
            FROM decisions d ORDER BY d.decided_at, d.hash_a, d.hash_b"""
    )
    count = 0
    while rows := cur.fetchmany(10_000):
        for row in rows:
            writer.writerow(["" if v is None else v for v in row])
            count += 1
    return count


def write_csv_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    export: Callable[[duckdb.DuckDBPyConnection, TextIO], int] = export_csv,
) -> int:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        n = export(con, fh)
    tmp.replace(path)
    return n
