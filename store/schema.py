"""The store's schema version and the runner that brings a file up to it.

Each table's module owns its DDL and its migrations (`MIGRATIONS`: version -> statements);
this module only knows the order in which they run. Users query the views (`images`,
`hubs`, `pairs`, `suggestions`, `suggestion_evidence`) with SQL, so those are a stable
interface (README.md documents them); the tables behind them may change between schema
versions. A view is not data: each is spelled once, as it is now, by the module of the
table it shows, and every migration ends by creating them all again.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

import duckdb

from store import actions, catalog, decisions, embeddings, folders, matches, meta, runs, suggestions

SCHEMA_VERSION = 5

# Within one version, a module's statements may read tables of modules before it: version
# 2 fills `folders` from the files' classes, then gives each file its folder's id.
_ORDER: Sequence[ModuleType] = (
    meta,
    folders,
    catalog,
    embeddings,
    matches,
    decisions,
    actions,
    runs,
    suggestions,
)
# Views read views: `hubs` reads `images`.
_VIEWS: Sequence[ModuleType] = (catalog, matches, suggestions)


def migrations(version: int) -> list[str]:
    """The statements that take a store from version - 1 to `version`, in order."""
    return [sql for module in _ORDER for sql in module.MIGRATIONS.get(version, ())]


def stored_version(con: duckdb.DuckDBPyConnection) -> int:
    """The schema version of the connection's file (0: an empty file)."""
    try:
        value = meta.get_meta(con, "schema_version")
    except duckdb.CatalogException:
        return 0
    return 0 if value is None else int(value)


def ensure_schema(con: duckdb.DuckDBPyConnection, target: int = SCHEMA_VERSION) -> None:
    """Bring a read-write connection's file to `target` (this facelint's version unless a
    test builds an older store); cheap when it already is there."""
    current = stored_version(con)
    if current > SCHEMA_VERSION:
        raise RuntimeError(
            f"store schema version {current} is newer than this facelint ({SCHEMA_VERSION})"
        )
    if current >= target:
        return
    con.execute("BEGIN TRANSACTION")
    for version in range(current + 1, target + 1):
        for statement in migrations(version):
            con.execute(statement)
    if target == SCHEMA_VERSION:
        # This version's views read this version's tables (an older store a test builds
        # keeps none: its views were that version's own).
        for module in _VIEWS:
            for statement in module.VIEWS:
                con.execute(statement)
    meta.set_meta(con, schema_version=target)
    con.execute("COMMIT")
