"""The command line's reads: top pairs, the pairs CSV, users' SQL (kept inside the store)."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import duckdb

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


class SqlRefused(ValueError):
    """A query `facelint sql` does not run (nothing of it ran): what and why, in words."""


# What `facelint sql` runs with, set on the connection before the query and locked, so
# that the query cannot set them back: no file but the store is read or written (COPY,
# read_csv, read_text, glob, EXPORT, ATTACH of a file), no extension is installed or
# loaded, no Python variable is scanned as a table.
LOCKED_SETTINGS = (
    "SET enable_external_access = false",
    "SET allow_community_extensions = false",
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET python_enable_replacements = false",
    "SET lock_configuration = true",
)

_T = duckdb.StatementType
# Statements refused by kind before anything runs, with why: what they do is reach outside
# the store, or change the settings above. The settings refuse them too; this says why.
_REFUSED = {
    _T.COPY: "COPY reads or writes files outside the store",
    _T.COPY_DATABASE: "COPY FROM DATABASE reaches another database",
    _T.EXPORT: "EXPORT DATABASE writes files outside the store",
    _T.LOAD: "INSTALL and LOAD bring in extensions",
    _T.EXTENSION: "extension statements bring in extensions",
    _T.ATTACH: "ATTACH opens another database",
    _T.DETACH: "DETACH changes the databases attached",
    _T.SET: "SET, RESET and USE change the session's settings, which stay as facelint set "
    "them (no access outside the store)",
}
# Statements run as they are: the store's own data, read (or, with --write, changed).
_RUN = {
    _T.SELECT,
    _T.INSERT,
    _T.UPDATE,
    _T.DELETE,
    _T.MERGE_INTO,
    _T.CREATE,
    _T.DROP,
    _T.ALTER,
    _T.EXPLAIN,
    _T.CALL,
    _T.TRANSACTION,
    _T.PREPARE,
    _T.EXECUTE,
    _T.ANALYZE,
    _T.VACUUM,
    _T.CREATE_FUNC,
    _T.RELATION,
    _T.PRAGMA,
}
# PRAGMAs that only describe the store (IMPORT DATABASE parses as a PRAGMA too).
_PRAGMAS = {
    "table_info",
    "show",
    "show_tables",
    "show_tables_expanded",
    "show_databases",
    "database_list",
    "database_size",
    "storage_info",
    "version",
    "platform",
    "functions",
    "collations",
    "metadata_info",
    "user_agent",
}


# A PRAGMA's name, after any comments before it.
_PRAGMA_NAME = re.compile(r"\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*pragma\s+(\w+)", re.I | re.S)


def require_query(query: str) -> None:
    if not query.strip():
        raise SqlRefused('no query given: facelint sql "SELECT * FROM pairs LIMIT 5"')


def check_sql(query: str) -> None:
    """Refuse, naming the statement and why, a query that would reach outside the store
    or change the session's settings; refuse an empty one. Only parses (on a connection
    of its own, in memory): a refused query never opens the store, nor waits for it."""
    require_query(query)
    parser = duckdb.connect(":memory:")
    try:
        # A syntax error is DuckDB's to say (its message says where): it passes through.
        statements = parser.extract_statements(query)
    except ValueError as exc:
        # A statement this DuckDB parses but its Python client cannot name.
        raise SqlRefused(f"a statement facelint sql does not run ({exc})") from exc
    finally:
        parser.close()
    if not statements:
        raise SqlRefused("no statement in the query (only comments?)")
    for st in statements:
        text = " ".join(st.query.split())
        head = text[:60] + ("…" if len(text) > 60 else "")
        try:
            kind = st.type
        except ValueError as exc:
            # A statement this DuckDB parses but its Python client cannot name
            # (UPDATE EXTENSIONS): not one facelint knows to be harmless.
            raise SqlRefused(f"refused {head!r}: a statement facelint sql does not run") from exc
        why = _REFUSED.get(kind)
        if why is None and kind == _T.PRAGMA:
            pragma = _PRAGMA_NAME.match(st.query)
            if pragma is None or pragma.group(1).lower() not in _PRAGMAS:
                why = {
                    "import": "IMPORT DATABASE reads files outside the store",
                    "copy": "COPY FROM DATABASE reaches another database",
                }.get(
                    text.split(" ", 1)[0].lower(),
                    "this PRAGMA reaches outside the store or changes settings",
                )
        elif why is None and kind not in _RUN:
            why = f"a {kind.name} statement is not one facelint sql runs"
        if why is not None:
            raise SqlRefused(
                f"refused {head!r}: {why}. facelint sql reads the store only "
                "(and, with --write, changes it)"
            )


def run_sql(con: duckdb.DuckDBPyConnection, query: str) -> tuple[list[str], Iterator[tuple]]:
    """A user's query, checked (check_sql), under LOCKED_SETTINGS. They hold for the
    DuckDB instance: `con` must be one of its own (open_store's `own_instance`)."""
    check_sql(query)
    for setting in LOCKED_SETTINGS:
        con.execute(setting)
    cur = con.execute(query)
    columns = [d[0] for d in cur.description] if cur.description else []

    def rows() -> Iterator[tuple]:
        while batch := cur.fetchmany(10_000):
            yield from batch

    return columns, rows()


def write_file(path: Path, write: Callable[[TextIO], int]) -> int:
    """write(fh) into a temporary file beside `path`, renamed over it when done: a failed
    export never leaves half a file under the name."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            n = write(fh)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)
    return n
