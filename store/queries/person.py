"""A person's page: folders by name, a folder's images and its pairs grouped by folder."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from store.queries.images import ImageInfo, images_where
from store.sql import first_row


def class_names(
    con: duckdb.DuckDBPyConnection, search: str = "", limit: int = 200, offset: int = 0
) -> list[tuple[str, int]]:
    """(class, number of images) whose name contains `search` (any case): the exact name
    first, then names starting with it, then the rest, each by name. Type-ahead over every
    folder: the database filters, the browser gets one page."""
    needle = search.strip().lower()
    return [
        (r[0], int(r[1]))
        for r in con.execute(
            """SELECT class, count(*) FROM files WHERE contains(lower(class), $s)
               GROUP BY class
               ORDER BY lower(class) <> $s, NOT starts_with(lower(class), $s), class
               LIMIT $limit OFFSET $offset""",
            {"s": needle, "limit": int(limit), "offset": int(offset)},
        ).fetchall()
    ]


def count_classes(con: duckdb.DuckDBPyConnection, search: str = "") -> int:
    row = con.execute(
        "SELECT count(DISTINCT class) FROM files WHERE contains(lower(class), ?)",
        [search.strip().lower()],
    ).fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True)
class PairGroup:
    """Every stored pair between one image of a class and one other class, as one row:
    "X.jpg matches 10 images of Y" instead of ten rows."""

    image: str  # path of this class's image
    other_class: str
    matches: int
    best_score: float
    decided: int


def class_pair_groups(
    con: duckdb.DuckDBPyConnection, klass: str, limit: int, offset: int = 0
) -> tuple[list[PairGroup], int, int]:
    """One page of a class's pairs grouped by (its image, the other class), best first;
    the number of groups and of pairs in all."""
    rows = con.execute(
        """WITH mine AS (SELECT id, path, hash FROM files WHERE class = $klass),
           p AS (
               SELECT m.path, o.class AS other, r.score, m.hash AS h1, o.hash AS h2
               FROM pair_rows r JOIN mine m ON m.id = r.lo JOIN files o ON o.id = r.hi
               UNION ALL
               SELECT m.path, o.class, r.score, m.hash, o.hash
               FROM pair_rows r JOIN mine m ON m.id = r.hi JOIN files o ON o.id = r.lo),
           g AS (
               SELECT p.path, p.other, count(*) AS n, max(p.score) AS best,
                      count(d.decision) AS decided
               FROM p LEFT JOIN decisions d
                   ON d.hash_a = least(p.h1, p.h2) AND d.hash_b = greatest(p.h1, p.h2)
               GROUP BY p.path, p.other)
           SELECT path, other, n, best, decided, count(*) OVER (), sum(n) OVER ()
           FROM g ORDER BY best DESC, path, other LIMIT $limit OFFSET $offset""",
        {"klass": klass, "limit": int(limit), "offset": int(offset)},
    ).fetchall()
    if not rows:
        total = con.execute(
            """SELECT count(*) FROM pair_rows r
               WHERE r.lo IN (SELECT id FROM files WHERE class = $k)
                  OR r.hi IN (SELECT id FROM files WHERE class = $k)""",
            {"k": klass},
        ).fetchone()
        return [], 0, int(total[0]) if total else 0
    groups = [
        PairGroup(
            image=path, other_class=other, matches=int(n), best_score=float(best), decided=int(d)
        )
        for path, other, n, best, d, _groups, _pairs in rows
    ]
    return groups, int(rows[0][5]), int(rows[0][6])


def class_images(
    con: duckdb.DuckDBPyConnection, klass: str, limit: int, offset: int = 0
) -> tuple[list[ImageInfo], int]:
    """One page of a class's images by path, and how many it has in all."""
    images = images_where(
        con, "class = ? ORDER BY path LIMIT ? OFFSET ?", [klass, int(limit), int(offset)]
    )
    total = first_row(con, "SELECT count(*) FROM files WHERE class = ?", [klass])
    return images, int(total[0]) if total else 0
