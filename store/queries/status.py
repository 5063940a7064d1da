"""The status page and `facelint status`: the store's totals, calibration and histogram."""

from __future__ import annotations

from typing import Any

import duckdb

from store import decisions, matches, meta, runs
from store.scores import DEFAULT_THRESHOLD
from store.sql import first_row
from store.vocab import Decision, State


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> Any:
    row = first_row(con, sql)
    return row[0] if row else None


def summary(con: duckdb.DuckDBPyConnection, threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """Totals the status command and the dashboard show (`threshold`: the user's, for
    what the calibration says of it)."""
    model = meta.model(con)
    statuses = dict(
        con.execute(
            "SELECT coalesce(status, 'pending'), count(*) FROM images GROUP BY 1"
        ).fetchall()
    )
    cal = first_row(
        con,
        """SELECT kind, zero_cos, anchor_cos, images, computed_at FROM calibration
           WHERE model = ?""",
        [model],
    )
    calibration = matches.load_calibration(con, model) if model else None
    open_by_kind = dict(
        con.execute(
            "SELECT kind, count(*) FROM suggestions WHERE state = ? GROUP BY 1 ORDER BY 1",
            [str(State.OPEN)],
        ).fetchall()
    )
    return {
        "images": _one(con, "SELECT count(*) FROM files"),
        "classes": _one(con, "SELECT count(DISTINCT class) FROM files"),
        "pairs": matches.count_pairs(con),
        "unreviewed_pairs": _one(con, "SELECT count(*) FROM pairs WHERE decision IS NULL"),
        "hubs": _one(con, "SELECT count(*) FROM hubs"),
        "encoded_total": meta.get_counter(con, "encoded_total"),
        "pending": _one(con, "SELECT count(*) FROM files WHERE dirty"),
        "statuses": statuses,
        "model": model,
        "last_run": runs.last_run(con),
        "last_reconcile": _one(
            con,
            "SELECT strftime(max(finished_at), '%Y-%m-%dT%H:%M:%S+00:00') FROM runs "
            "WHERE kind IN ('scan', 'reconcile')",
        ),
        "calibration": None
        if cal is None
        else {
            "kind": cal[0],
            "zero_cos": cal[1],
            "anchor_cos": cal[2],
            "images": cal[3],
            "computed_at": str(cal[4]),
            "threshold": threshold,
            "false_matches_per_image": calibration.false_per_image(threshold)
            if calibration
            else None,
            "recall": calibration.recall if calibration else None,
        },
        "open_suggestions": sum(open_by_kind.values()),
        "open_suggestions_by_kind": open_by_kind,
    }


def totals(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """The store's totals and calibration, as the status page shows them (what the
    calibration says of the threshold the pairs were stored with)."""
    out = summary(con, meta.threshold(con) or DEFAULT_THRESHOLD)
    out["decisions"] = decisions.counts(con)
    return out


def score_histogram(con: duckdb.DuckDBPyConnection, bins: int = 30) -> list[tuple[float, str, int]]:
    """(bin's lowest score, decision group, pairs) over the stored pairs: "same" (same
    person or removed), "different", or "open" (no decision or skipped)."""
    rows = con.execute(
        f"""SELECT floor(p.score * {int(bins)}) / {int(bins)} AS lo,
                   CASE WHEN d.decision IN ($same, $removed) THEN $same
                        WHEN d.decision = $different THEN $different
                        ELSE $open END AS grp,
                   count(*)
            FROM pair_rows p JOIN files fa ON fa.id = p.lo JOIN files fb ON fb.id = p.hi
            LEFT JOIN decisions d ON d.hash_a = least(fa.hash, fb.hash)
                AND d.hash_b = greatest(fa.hash, fb.hash)
            GROUP BY ALL ORDER BY lo, grp""",
        {
            "same": str(Decision.SAME),
            "removed": str(Decision.REMOVED),
            "different": str(Decision.DIFFERENT),
            "open": str(State.OPEN),
        },
    ).fetchall()
    return [(float(r[0]), str(r[1]), int(r[2])) for r in rows]
