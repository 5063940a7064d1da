"""Match lists, pairs and the score calibration.

`neighbors` holds each image's best K cross-class matches (directed); `pair_rows` is their
undirected union with first/last seen; both are keyed by file id, so a moved file keeps
its history. Pairs are only ever rewritten for the images a change touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import duckdb
import numpy as np
import pyarrow as pa

from store import catalog
from store.scores import Calibration
from store.sql import first_row, records

MIGRATIONS: dict[int, list[str]] = {
    1: [
        # Each image's best K cross-class matches (directed); pairs are their undirected
        # union.
        "CREATE TABLE IF NOT EXISTS neighbors (src BIGINT, dst BIGINT, cosine FLOAT)",
        """CREATE TABLE IF NOT EXISTS pair_rows (
            lo BIGINT NOT NULL, hi BIGINT NOT NULL,
            cosine FLOAT NOT NULL, score FLOAT NOT NULL,
            first_seen TIMESTAMP NOT NULL, last_seen TIMESTAMP NOT NULL)""",
        # How raw cosine maps to the score (store/scores.py), per model.
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
    ],
    # What the calibration means: the fitted tail of different people's cosines, the
    # images each image meets, and the share of same-folder pairs at the anchor. Stored
    # calibrations go: the next run estimates them anew (and compares every file again).
    2: [
        "ALTER TABLE calibration ADD COLUMN tail_loc DOUBLE",
        "ALTER TABLE calibration ADD COLUMN tail_scale DOUBLE",
        'ALTER TABLE calibration ADD COLUMN "cross" DOUBLE',
        "ALTER TABLE calibration ADD COLUMN recall DOUBLE",
        "ALTER TABLE calibration ADD COLUMN genuine_samples BIGINT",
        "DELETE FROM calibration",
    ],
}

# The one spelling of `pairs` (README.md documents its columns): a pair by paths, the
# smaller path first, with the decision on its two contents.
VIEWS = [
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
]


def _register_ids(con: duckdb.DuckDBPyConnection, name: str, ids: Sequence[int] | np.ndarray):
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} (id BIGINT)")
    arr = pa.table({"id": pa.array(np.asarray(ids, dtype=np.int64))})
    con.register(f"{name}_src", arr)
    try:
        con.execute(f"INSERT INTO {name} (id) SELECT DISTINCT id FROM {name}_src")
    finally:
        con.unregister(f"{name}_src")


# Calibration's fields, as the table's columns are named.
_CAL_FIELDS = (
    "kind", "zero_cos", "anchor_cos", "anchor_score", "false_rate", "samples", "images",
    "tail_loc", "tail_scale", "cross", "recall", "genuine_samples",
)  # fmt: skip
_CAL_COLUMNS = ", ".join(f'"{f}"' for f in _CAL_FIELDS)


def load_calibration(con: duckdb.DuckDBPyConnection, model: str) -> Calibration | None:
    rows = records(con, f"SELECT {_CAL_COLUMNS} FROM calibration WHERE model = ?", [model])
    if not rows:
        return None
    row = rows[0]
    row["genuine_samples"] = int(row["genuine_samples"] or 0)
    return Calibration(**row)


def save_calibration(
    con: duckdb.DuckDBPyConnection, model: str, cal: Calibration, now: datetime
) -> None:
    values = {f: getattr(cal, f) for f in _CAL_FIELDS}
    con.execute(
        f"""INSERT OR REPLACE INTO calibration (model, {_CAL_COLUMNS}, computed_at)
            VALUES ($model, {", ".join("$" + f for f in _CAL_FIELDS)}, $now)""",
        {"model": model, **values, "now": now},
    )


def load_lists(con: duckdb.DuckDBPyConnection) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every stored list entry (src, dst, cosine): what an incremental compare builds on.
    Read whole in one short query (1.15 M rows at 57,637 images take ~0.1 s), so the
    comparison itself needs no connection."""
    table = con.sql("SELECT src, dst, cosine FROM neighbors").to_arrow_table()
    return (
        table.column("src").to_numpy().astype(np.int64),
        table.column("dst").to_numpy().astype(np.int64),
        table.column("cosine").to_numpy().astype(np.float32),
    )


def write_lists(
    con: duckdb.DuckDBPyConnection,
    sources: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    cos: np.ndarray,
    candidates: np.ndarray,
    cleared: Sequence[int] | np.ndarray,
    cal: Calibration,
    now: datetime,
) -> None:
    """Replace the lists of `sources`, then bring the pairs touching them up to date.

    `cleared` are files compared (or found unusable) in this round: their dirty flag goes
    in the same transaction, so a crash before it leaves them to be compared again.
    """
    _register_ids(con, "src_ids", sources)
    con.execute("DELETE FROM neighbors WHERE src IN (SELECT id FROM src_ids)")
    lists = pa.table(
        {
            "src": pa.array(np.asarray(src, np.int64)),
            "dst": pa.array(np.asarray(dst, np.int64)),
            "cosine": pa.array(np.asarray(cos, np.float32)),
        }
    )
    con.register("new_lists", lists)
    try:
        con.execute(
            "INSERT INTO neighbors (src, dst, cosine) SELECT src, dst, cosine FROM new_lists"
        )
    finally:
        con.unregister("new_lists")
    catalog.set_candidates(con, sources, candidates)
    # Pairs touching a source may come from its own list or from a partner's list.
    con.execute(
        """CREATE OR REPLACE TEMP TABLE want AS
           SELECT least(src, dst) AS lo, greatest(src, dst) AS hi, max(cosine) AS cosine
           FROM neighbors
           WHERE src IN (SELECT id FROM src_ids) OR dst IN (SELECT id FROM src_ids)
           GROUP BY 1, 2"""
    )
    _sync_pairs(con, "src_ids", cal, now)
    catalog.set_dirty(con, False, ids=cleared)


def _sync_pairs(
    con: duckdb.DuckDBPyConnection, scope: str, cal: Calibration, now: datetime
) -> None:
    score = cal.sql_expression("w.cosine")
    con.execute(
        f"""DELETE FROM pair_rows p
            WHERE (p.lo IN (SELECT id FROM {scope}) OR p.hi IN (SELECT id FROM {scope}))
              AND NOT EXISTS (SELECT 1 FROM want w WHERE w.lo = p.lo AND w.hi = p.hi)"""
    )
    con.execute(
        f"""UPDATE pair_rows SET cosine = w.cosine, score = {score}, last_seen = $now
            FROM want w WHERE pair_rows.lo = w.lo AND pair_rows.hi = w.hi""",
        {"now": now},
    )
    con.execute(
        f"""INSERT INTO pair_rows (lo, hi, cosine, score, first_seen, last_seen)
            SELECT w.lo, w.hi, w.cosine, {score}, $now, $now FROM want w
            WHERE NOT EXISTS (SELECT 1 FROM pair_rows p WHERE p.lo = w.lo AND p.hi = w.hi)""",
        {"now": now},
    )


def forget_matches(
    con: duckdb.DuckDBPyConnection, ids: Sequence[int], k: int, delete_files: bool
) -> int:
    """Drop the matches of `ids` (and the files, if deleted); returns pairs removed.

    A partner that had more than k candidates loses a list entry it cannot refill from
    what is stored: it is marked dirty so that the next compare recomputes its list.
    """
    if len(ids) == 0:
        return 0
    _register_ids(con, "gone_ids", ids)
    holders = [
        r[0]
        for r in con.execute(
            f"""SELECT id FROM files WHERE candidates > {int(k)} AND id IN (
                    SELECT src FROM neighbors WHERE dst IN (SELECT id FROM gone_ids))"""
        ).fetchall()
    ]
    catalog.set_dirty(con, True, ids=holders)
    con.execute(
        """DELETE FROM neighbors WHERE src IN (SELECT id FROM gone_ids)
                                    OR dst IN (SELECT id FROM gone_ids)"""
    )
    row = first_row(
        con,
        """SELECT count(*) FROM pair_rows WHERE lo IN (SELECT id FROM gone_ids)
                                             OR hi IN (SELECT id FROM gone_ids)""",
    )
    con.execute(
        """DELETE FROM pair_rows WHERE lo IN (SELECT id FROM gone_ids)
                                    OR hi IN (SELECT id FROM gone_ids)"""
    )
    if delete_files:
        catalog.delete_files(con, ids)
    else:
        catalog.set_dirty(con, False, ids=ids, reset_candidates=True)
    return int(row[0]) if row else 0


def count_pairs(con: duckdb.DuckDBPyConnection) -> int:
    row = first_row(con, "SELECT count(*) FROM pair_rows")
    return int(row[0]) if row else 0
