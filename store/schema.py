"""The store's schema and its migrations.

Users query the views (`pairs`, `images`, `hubs`, `decisions_view`) with SQL, so those are
a stable interface (README.md documents them); the tables behind them may change between
schema versions, and each change is a migration below.
"""

from __future__ import annotations

import duckdb

from store.sql import first_row

SCHEMA_VERSION = 1

_V1 = [
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    "CREATE SEQUENCE IF NOT EXISTS file_ids START 1",
    # One row per distinct content and model: a moved, copied or touched file reuses it.
    """CREATE TABLE IF NOT EXISTS embeddings (
        hash VARCHAR NOT NULL,
        model VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        message VARCHAR,
        faces INTEGER,
        box_left INTEGER, box_top INTEGER, box_right INTEGER, box_bottom INTEGER,
        whole_image BOOLEAN,
        width INTEGER, height INTEGER,
        vector FLOAT[],
        encoded_at TIMESTAMP NOT NULL,
        PRIMARY KEY (hash, model))""",
    # One row per file on disk. `dirty` marks files whose pairs must be recomputed: it is
    # cleared in the same transaction that writes those pairs, so a crash loses nothing.
    """CREATE TABLE IF NOT EXISTS files (
        id BIGINT PRIMARY KEY,
        path VARCHAR NOT NULL UNIQUE,
        class VARCHAR NOT NULL,
        size BIGINT NOT NULL,
        mtime_ns BIGINT NOT NULL,
        hash VARCHAR,
        first_seen TIMESTAMP NOT NULL,
        last_seen TIMESTAMP NOT NULL,
        dirty BOOLEAN NOT NULL DEFAULT true,
        candidates INTEGER NOT NULL DEFAULT 0)""",
    # Each image's best K cross-class matches (directed); pairs are their undirected union.
    "CREATE TABLE IF NOT EXISTS neighbors (src BIGINT, dst BIGINT, cosine FLOAT)",
    """CREATE TABLE IF NOT EXISTS pair_rows (
        lo BIGINT NOT NULL, hi BIGINT NOT NULL,
        cosine FLOAT NOT NULL, score FLOAT NOT NULL,
        first_seen TIMESTAMP NOT NULL, last_seen TIMESTAMP NOT NULL)""",
    # How raw cosine maps to the score: piecewise linear through (-1,-1), (zero_cos, 0),
    # (anchor_cos, anchor_score), (1, 1): monotone, so the model's ranking is kept.
    """CREATE TABLE IF NOT EXISTS calibration (
        model VARCHAR PRIMARY KEY,
        kind VARCHAR NOT NULL,
        zero_cos DOUBLE NOT NULL,
        anchor_cos DOUBLE NOT NULL,
        anchor_score DOUBLE NOT NULL,
        false_rate DOUBLE,
        samples BIGINT,
        images BIGINT,
        computed_at TIMESTAMP NOT NULL)""",
    # Review decisions, keyed by the two images' content so they survive moves and re-scans.
    """CREATE TABLE IF NOT EXISTS decisions (
        hash_a VARCHAR NOT NULL, hash_b VARCHAR NOT NULL,
        decision VARCHAR NOT NULL,
        note VARCHAR,
        decided_by VARCHAR,
        decided_at TIMESTAMP NOT NULL,
        PRIMARY KEY (hash_a, hash_b))""",
    # File actions taken from the dashboard, for audit and undo.
    "CREATE SEQUENCE IF NOT EXISTS action_ids START 1",
    """CREATE TABLE IF NOT EXISTS actions (
        id BIGINT PRIMARY KEY,
        acted_at TIMESTAMP NOT NULL,
        who VARCHAR,
        action VARCHAR NOT NULL,
        src VARCHAR NOT NULL,
        dst VARCHAR NOT NULL,
        hash_a VARCHAR, hash_b VARCHAR,
        undone_at TIMESTAMP,
        undo_of BIGINT)""",
    "CREATE TABLE IF NOT EXISTS counters (name VARCHAR PRIMARY KEY, value BIGINT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS runs (
        started_at TIMESTAMP NOT NULL, finished_at TIMESTAMP,
        kind VARCHAR NOT NULL, root VARCHAR,
        images BIGINT, encoded BIGINT, reused BIGINT, removed BIGINT, failed BIGINT,
        pairs BIGINT, full_compare BOOLEAN)""",
    # Views: the stable interface for reports.
    """CREATE OR REPLACE VIEW images AS
        SELECT f.path, f.class, e.status, e.message, e.faces, f.hash,
               e.box_left, e.box_top, e.box_right, e.box_bottom, e.whole_image,
               e.width, e.height, e.model, f.size, f.first_seen, f.last_seen,
               f.candidates, f.id AS image_id
        FROM files f LEFT JOIN embeddings e ON e.hash = f.hash
            AND e.model = (SELECT value FROM meta WHERE key = 'model')""",
    """CREATE OR REPLACE VIEW pairs AS
        SELECT
            CASE WHEN fa.path < fb.path THEN fa.path ELSE fb.path END AS path_a,
            CASE WHEN fa.path < fb.path THEN fa.class ELSE fb.class END AS class_a,
            CASE WHEN fa.path < fb.path THEN fb.path ELSE fa.path END AS path_b,
            CASE WHEN fa.path < fb.path THEN fb.class ELSE fa.class END AS class_b,
            p.score, p.cosine, p.first_seen, p.last_seen,
            CASE WHEN fa.path < fb.path THEN fa.hash ELSE fb.hash END AS hash_a,
            CASE WHEN fa.path < fb.path THEN fb.hash ELSE fa.hash END AS hash_b,
            d.decision
        FROM pair_rows p
        JOIN files fa ON fa.id = p.lo
        JOIN files fb ON fb.id = p.hi
        LEFT JOIN decisions d ON d.hash_a = least(fa.hash, fb.hash)
            AND d.hash_b = greatest(fa.hash, fb.hash)""",
    # A hub matches far more images than is typical here. "More than the cap" alone stops
    # meaning anything at scale: at 57,637 faces the calibrated threshold lets ~860
    # candidates through for an ordinary face, so every image would be over a cap of 20.
    """CREATE OR REPLACE VIEW hubs AS
        SELECT path, class, candidates FROM images
        WHERE candidates > CAST((SELECT value FROM meta WHERE key = 'max_pairs_per_image')
                                AS INTEGER)
          AND candidates > 4 * (SELECT coalesce(median(candidates), 0) FROM files)""",
]

_MIGRATIONS: dict[int, list[str]] = {1: _V1}


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Bring a read-write connection's file to SCHEMA_VERSION; cheap when it already is."""
    try:
        row = first_row(con, "SELECT value FROM meta WHERE key = 'schema_version'")
        current = int(row[0]) if row else 0
    except duckdb.CatalogException:
        current = 0
    if current > SCHEMA_VERSION:
        raise RuntimeError(
            f"store schema version {current} is newer than this facelint ({SCHEMA_VERSION})"
        )
    if current == SCHEMA_VERSION:
        return
    con.execute("BEGIN TRANSACTION")
    for version in range(current + 1, SCHEMA_VERSION + 1):
        for statement in _MIGRATIONS[version]:
            con.execute(statement)
    con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
    con.execute("COMMIT")
