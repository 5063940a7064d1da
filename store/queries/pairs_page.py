"""The pairs page: pairs to review, a page at a time, by filter."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb

from store.decisions import decisions_of
from store.queries.images import ImageInfo, images_by_id
from store.vocab import Decision

# Review-state filters of the pairs page, and the SQL each one means.
REVIEW_STATES: dict[str, str] = {
    "unreviewed": "d.decision IS NULL",
    Decision.SKIPPED: f"d.decision = '{Decision.SKIPPED}'",
    Decision.DIFFERENT: f"d.decision = '{Decision.DIFFERENT}'",
    Decision.SAME: f"d.decision = '{Decision.SAME}'",
    Decision.REMOVED: f"d.decision = '{Decision.REMOVED}'",
    "decided": f"d.decision IS NOT NULL AND d.decision <> '{Decision.SKIPPED}'",
    "all": "true",
}


@dataclass(frozen=True)
class Cursor:
    """Where a page of pairs ended: the next page starts strictly after it."""

    score: float
    lo: int
    hi: int


@dataclass(frozen=True)
class PairView:
    lo: int
    hi: int
    score: float
    cosine: float
    first_seen: datetime
    decision: str | None
    a: ImageInfo  # the image with the smaller path, as in the `pairs` view
    b: ImageInfo

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.score, self.lo, self.hi)


@dataclass(frozen=True)
class PairFilter:
    min_score: float = -1.0
    max_score: float = 1.0
    # Case-insensitive substring of either class name.
    class_search: str = ""
    # Exactly this class on either side (a person's page).
    klass: str | None = None
    state: str = "unreviewed"


def _pair_query(flt: PairFilter, params: dict[str, Any]) -> tuple[str, str]:
    """(FROM ..., WHERE ...) selecting the pairs `p` a filter keeps.

    Only pair_rows' own columns are read per pair; decisions and class searches become
    small id sets joined against it. Joining every pair with its two files first (as the
    `pairs` view does) costs two to three times more at a million pairs.
    """
    if flt.state not in REVIEW_STATES:
        raise ValueError(f"unknown review state {flt.state!r}: one of {', '.join(REVIEW_STATES)}")
    source = "pair_rows p"
    if flt.state != "all":
        # Decided pairs as file-id pairs: every file holding either content counts, as
        # in the `pairs` view, so a decision follows the content wherever it is filed.
        which = "true" if flt.state == "unreviewed" else REVIEW_STATES[flt.state]
        join = "ANTI JOIN" if flt.state == "unreviewed" else "SEMI JOIN"
        source += f""" {join} (
            SELECT DISTINCT least(fa.id, fb.id) AS lo, greatest(fa.id, fb.id) AS hi
            FROM decisions d JOIN files fa ON fa.hash = d.hash_a
                JOIN files fb ON fb.hash = d.hash_b
            WHERE {which}) x ON x.lo = p.lo AND x.hi = p.hi"""
    clauses = ["p.score >= $min_score", "p.score <= $max_score"]
    params["min_score"] = float(flt.min_score)
    params["max_score"] = float(flt.max_score)
    if flt.class_search.strip():
        # contains() rather than LIKE: a name with % or _ is searched for literally.
        found = "SELECT id FROM files WHERE contains(lower(class), $search)"
        clauses.append(f"(p.lo IN ({found}) OR p.hi IN ({found}))")
        params["search"] = flt.class_search.strip().lower()
    if flt.klass is not None:
        members = "SELECT id FROM files WHERE class = $klass"
        clauses.append(f"(p.lo IN ({members}) OR p.hi IN ({members}))")
        params["klass"] = flt.klass
    return source, " AND ".join(clauses)


def pair_page(
    con: duckdb.DuckDBPyConnection,
    flt: PairFilter,
    limit: int,
    after: Cursor | None = None,
) -> list[PairView]:
    """One page of pairs, best score first, starting after `after`.

    Keyset paging on (score desc, lo, hi): a deep page costs what the first one does,
    where OFFSET would sort everything before it (benchmarks/bench_dashboard.py).
    """
    params: dict[str, Any] = {"limit": int(limit)}
    source, where = _pair_query(flt, params)
    if after is not None:
        # The column is FLOAT: compare in FLOAT so the cursor's own row compares equal.
        where += """ AND (p.score < CAST($c_score AS FLOAT)
            OR (p.score = CAST($c_score AS FLOAT)
                AND (p.lo > $c_lo OR (p.lo = $c_lo AND p.hi > $c_hi))))"""
        params.update(c_score=after.score, c_lo=after.lo, c_hi=after.hi)
    rows = con.execute(
        f"""SELECT p.lo, p.hi, p.score, p.cosine, p.first_seen FROM {source}
            WHERE {where} ORDER BY p.score DESC, p.lo, p.hi LIMIT $limit""",
        params,
    ).fetchall()
    images = images_by_id(con, [r[0] for r in rows] + [r[1] for r in rows])
    found = []
    for lo, hi, score, cosine, first_seen in rows:
        x, y = images.get(lo), images.get(hi)
        # A pair whose file row is missing (a hand-edited store) is left out, as the
        # `pairs` view's inner joins leave it out, rather than failing the page.
        if x is not None and y is not None:
            a, b = (x, y) if x.path < y.path else (y, x)
            found.append((lo, hi, float(score), float(cosine), first_seen, a, b))
    decisions = decisions_of(con, [(a.hash, b.hash) for *_, a, b in found if a.hash and b.hash])
    return [
        PairView(
            lo=lo,
            hi=hi,
            score=score,
            cosine=cosine,
            first_seen=first_seen,
            decision=decisions.get(
                (min(a.hash or "", b.hash or ""), max(a.hash or "", b.hash or ""))
            ),
            a=a,
            b=b,
        )
        for lo, hi, score, cosine, first_seen, a, b in found
    ]


def cursor_at(con: duckdb.DuckDBPyConnection, flt: PairFilter, rank: int) -> Cursor | None:
    """The cursor of the pair at 0-based `rank` in the filter's order (a page to jump to
    starts after it). One OFFSET query: it sorts up to that rank once, where paging there
    one page at a time would cost a query per page."""
    if rank < 0:
        return None
    params: dict[str, Any] = {"rank": int(rank)}
    source, where = _pair_query(flt, params)
    rows = con.execute(
        f"""SELECT p.score, p.lo, p.hi FROM {source} WHERE {where}
            ORDER BY p.score DESC, p.lo, p.hi LIMIT 1 OFFSET $rank""",
        params,
    ).fetchall()
    return Cursor(float(rows[0][0]), int(rows[0][1]), int(rows[0][2])) if rows else None


def _image_class_pairs_ctes(flt: PairFilter, params: dict[str, Any]) -> str:
    """WITH clauses ending in `x`: (id, other, other_id) for the filter's pairs joining
    each key's image (`$ids`) to an image of its other class (`$others`)."""
    source, where = _pair_query(flt, params)
    return f"""WITH _keys AS (SELECT unnest($ids) AS id, unnest($others) AS other),
        p AS (SELECT p.lo, p.hi FROM {source} WHERE {where}),
        x AS (
            SELECT k.id, k.other, o.id AS other_id
            FROM _keys k JOIN p ON p.lo = k.id
                JOIN files o ON o.id = p.hi AND o.class = k.other
            UNION ALL
            SELECT k.id, k.other, o.id
            FROM _keys k JOIN p ON p.hi = k.id
                JOIN files o ON o.id = p.lo AND o.class = k.other)"""


def image_class_counts(
    con: duckdb.DuckDBPyConnection, flt: PairFilter, keys: Iterable[tuple[int, str]]
) -> dict[tuple[int, str], int]:
    """For each (image id, other class): how many of the filter's pairs join that image to
    that class. A group photo whose chosen face is a bystander matches a whole folder:
    the queue says so on one card instead of filling pages."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    params: dict[str, Any] = {"ids": [k[0] for k in wanted], "others": [k[1] for k in wanted]}
    ctes = _image_class_pairs_ctes(flt, params)
    rows = con.execute(f"{ctes} SELECT id, other, count(*) FROM x GROUP BY ALL", params)
    return {(int(r[0]), str(r[1])): int(r[2]) for r in rows.fetchall()}


def image_class_hashes(
    con: duckdb.DuckDBPyConnection, flt: PairFilter, image_id: int, other_class: str
) -> list[tuple[str, str]]:
    """The content-hash pairs of the filter's pairs joining one image to one class."""
    params: dict[str, Any] = {"ids": [int(image_id)], "others": [other_class]}
    ctes = _image_class_pairs_ctes(flt, params)
    rows = con.execute(
        f"""{ctes} SELECT fa.hash, fb.hash FROM x
            JOIN files fa ON fa.id = x.id JOIN files fb ON fb.id = x.other_id
            WHERE fa.hash IS NOT NULL AND fb.hash IS NOT NULL""",
        params,
    ).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def count_pairs(con: duckdb.DuckDBPyConnection, flt: PairFilter) -> int:
    params: dict[str, Any] = {}
    source, where = _pair_query(flt, params)
    row = con.execute(f"SELECT count(*) FROM {source} WHERE {where}", params).fetchone()
    return int(row[0]) if row else 0
