"""The store's schema and its migrations.

Users query the views (`pairs`, `images`, `hubs`, `decisions_view`) with SQL, so those are
a stable interface (README.md documents them); the tables behind them may change between
schema versions, and each change is a migration below.
"""

from __future__ import annotations

import duckdb

from store.sql import first_row

SCHEMA_VERSION = 3

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

# Version 2: every detected face of an image (a group photo's label means one of them),
# folders with an identity that survives a rename, and mistakes ("suggestions") to review.
_V2 = [
    """CREATE TABLE IF NOT EXISTS faces (
        hash VARCHAR NOT NULL,
        model VARCHAR NOT NULL,
        face SMALLINT NOT NULL,
        box_left INTEGER, box_top INTEGER, box_right INTEGER, box_bottom INTEGER,
        det_score FLOAT,
        vector FLOAT[] NOT NULL,
        PRIMARY KEY (hash, model, face))""",
    """INSERT INTO faces
        SELECT hash, model, 0, box_left, box_top, box_right, box_bottom, 0, vector
        FROM embeddings WHERE vector IS NOT NULL""",
    "ALTER TABLE embeddings DROP COLUMN vector",
    "ALTER TABLE embeddings DROP COLUMN box_left",
    "ALTER TABLE embeddings DROP COLUMN box_top",
    "ALTER TABLE embeddings DROP COLUMN box_right",
    "ALTER TABLE embeddings DROP COLUMN box_bottom",
    "CREATE SEQUENCE IF NOT EXISTS folder_ids START 1",
    "CREATE TABLE IF NOT EXISTS folders (id BIGINT PRIMARY KEY, name VARCHAR NOT NULL UNIQUE)",
    """INSERT INTO folders SELECT nextval('folder_ids'), class
        FROM (SELECT DISTINCT class FROM files ORDER BY class)""",
    "ALTER TABLE files ADD COLUMN folder_id BIGINT",
    "UPDATE files SET folder_id = (SELECT id FROM folders WHERE folders.name = files.class)",
    # The face that stands for the image in its folder (under the active model).
    "ALTER TABLE files ADD COLUMN face SMALLINT DEFAULT 0",
    # A reviewer's choice of the face that stands for an image in one folder.
    """CREATE TABLE IF NOT EXISTS face_picks (
        hash VARCHAR NOT NULL, model VARCHAR NOT NULL, class VARCHAR NOT NULL,
        face SMALLINT NOT NULL, picked_by VARCHAR, picked_at TIMESTAMP NOT NULL,
        PRIMARY KEY (hash, model, class))""",
    # Suggested mistakes as last computed. Decided ones stay after they stop being computed
    # (active = false), so the view keeps every decision a reviewer made.
    """CREATE TABLE IF NOT EXISTS suggestion_rows (
        id VARCHAR PRIMARY KEY,
        kind VARCHAR NOT NULL,
        model VARCHAR,
        folder_a BIGINT, folder_b BIGINT,
        hash VARCHAR, file_id BIGINT,
        rank_score DOUBLE NOT NULL,
        strength DOUBLE,
        images INTEGER,
        evidence VARCHAR NOT NULL,
        class_a_name VARCHAR, class_b_name VARCHAR, path_name VARCHAR,
        active BOOLEAN NOT NULL DEFAULT true,
        first_seen TIMESTAMP NOT NULL, last_seen TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS suggestion_pairs (
        id VARCHAR NOT NULL, a BIGINT NOT NULL, b BIGINT NOT NULL, score FLOAT NOT NULL)""",
    # Decisions on suggestions, keyed by the suggestion id (folders by identity, images by
    # content): they survive rescans, moves, renames, restarts and a model switch.
    """CREATE TABLE IF NOT EXISTS suggestion_decisions (
        id VARCHAR PRIMARY KEY,
        decision VARCHAR NOT NULL,
        rank_score DOUBLE, images INTEGER,
        target VARCHAR, note VARCHAR,
        decided_by VARCHAR, decided_at TIMESTAMP NOT NULL,
        reopened_at TIMESTAMP, reopened_why VARCHAR)""",
    """CREATE OR REPLACE VIEW images AS
        SELECT f.path, f.class, e.status, e.message, e.faces, f.hash,
               fc.box_left, fc.box_top, fc.box_right, fc.box_bottom, e.whole_image,
               e.width, e.height, e.model, f.size, f.first_seen, f.last_seen,
               f.candidates, f.id AS image_id, f.face
        FROM files f
        LEFT JOIN embeddings e ON e.hash = f.hash
            AND e.model = (SELECT value FROM meta WHERE key = 'model')
        LEFT JOIN faces fc ON fc.hash = f.hash AND fc.model = e.model
            AND fc.face = coalesce(f.face, 0)""",
    # What the calibration means: the fitted tail of different people's cosines, the
    # images each image meets, and the share of same-folder pairs at the anchor.
    "ALTER TABLE calibration ADD COLUMN tail_loc DOUBLE",
    "ALTER TABLE calibration ADD COLUMN tail_scale DOUBLE",
    "ALTER TABLE calibration ADD COLUMN \"cross\" DOUBLE",
    "ALTER TABLE calibration ADD COLUMN recall DOUBLE",
    "ALTER TABLE calibration ADD COLUMN genuine_samples BIGINT",
    # Pairs and lists are rebuilt under the new calibration on the first run.
    "UPDATE files SET dirty = true",
    "DELETE FROM calibration",
    """CREATE OR REPLACE VIEW suggestions AS
        SELECT s.id, s.kind, s.rank_score,
               coalesce(fa.name, s.class_a_name) AS class_a,
               coalesce(fb.name, s.class_b_name) AS class_b,
               coalesce(f.path, s.path_name) AS path,
               s.evidence,
               CASE WHEN d.decision IS NULL OR d.reopened_at IS NOT NULL THEN 'open'
                    ELSE d.decision END AS state,
               s.model, s.hash, s.images, s.active, s.first_seen, s.last_seen,
               d.decided_by, d.decided_at, d.target, d.reopened_why
        FROM suggestion_rows s
        LEFT JOIN folders fa ON fa.id = s.folder_a
        LEFT JOIN folders fb ON fb.id = s.folder_b
        LEFT JOIN files f ON f.id = s.file_id
        LEFT JOIN suggestion_decisions d ON d.id = s.id
        WHERE s.active OR d.decision IS NOT NULL""",
    """CREATE OR REPLACE VIEW suggestion_evidence AS
        SELECT p.id, fa.path AS path_a, fa.class AS class_a, fb.path AS path_b,
               fb.class AS class_b, p.score
        FROM suggestion_pairs p
        JOIN files fa ON fa.id = p.a
        JOIN files fb ON fb.id = p.b""",
]

# Version 3: file actions done together (the moves of one folder merge) share a batch
# number, so one undo takes all of them back; NULL for an action done on its own.
_V3 = [
    "ALTER TABLE actions ADD COLUMN batch BIGINT",
    "CREATE SEQUENCE IF NOT EXISTS action_batches START 1",
    # The suggestion a file action decided, so its undo reopens that suggestion.
    "ALTER TABLE actions ADD COLUMN suggestion VARCHAR",
]

_MIGRATIONS: dict[int, list[str]] = {1: _V1, 2: _V2, 3: _V3}


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
