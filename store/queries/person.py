"""A person's page: folders by name, a folder's images and its pairs grouped by folder."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import duckdb

from store.queries.images import ImageInfo, images_where
from store.sql import first_row


def nfc(name: str) -> str:
    """A name as it is compared and grouped: NFC (what a keyboard types; macOS writes
    file names in NFD, so one name can reach the disk in two forms)."""
    return unicodedata.normalize("NFC", name)


def unicode_form(name: str) -> str:
    """Which form a name is written in: "NFC", "NFD" or "mixed" (what tells two folders
    of one name apart, on the card and the person page)."""
    return next((f for f in ("NFC", "NFD") if unicodedata.is_normalized(f, name)), "mixed")


def search_key(text: str) -> str:
    """A name as it is searched: NFKC and case-folded (full-width and half-width forms
    are one: `ｽｽﾞｷ` finds `スズキ`), with every run of spaces, full-width spaces and
    underscores one space (`田中　花子` finds `田中 花子`, `joe biden` finds `Joe_Biden`)."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return " ".join(folded.replace("_", " ").split())


def _all_classes(con: duckdb.DuckDBPyConnection) -> list[tuple[str, int]]:
    return [
        (r[0], int(r[1]))
        for r in con.execute(
            "SELECT class, count(*) FROM files GROUP BY class ORDER BY class"
        ).fetchall()
    ]


def _matching(con: duckdb.DuckDBPyConnection, search: str) -> list[tuple[str, int]]:
    """Folders whose name holds `search` as people type it (search_key on both sides):
    the exact name first, then names starting with it, then the rest, each by name.
    Folded here, not in SQL: DuckDB has no NFKC (a GROUP BY of every folder is a few
    milliseconds even at 57,637 files)."""
    needle = search_key(search)
    keyed = [(search_key(name), name, n) for name, n in _all_classes(con)]
    found = [(k, name, n) for k, name, n in keyed if needle in k]
    found.sort(key=lambda e: (e[0] != needle, not e[0].startswith(needle), nfc(e[1]), e[1]))
    return [(name, n) for _, name, n in found]


def class_names(
    con: duckdb.DuckDBPyConnection, search: str = "", limit: int = 200, offset: int = 0
) -> list[tuple[str, int]]:
    """(class, number of images) whose name holds `search` as people type it (any case,
    any Unicode form, full- or half-width, spaces as typed). Type-ahead over every folder:
    the browser gets one page."""
    return _matching(con, search)[int(offset) : int(offset) + int(limit)]


def find_classes(
    con: duckdb.DuckDBPyConnection, search: str, limit: int = 200
) -> tuple[list[tuple[str, int]], int]:
    """The first `limit` folders `class_names` would list, and how many match in all:
    one pass over the folders."""
    found = _matching(con, search)
    return found[: int(limit)], len(found)


def folders_named(con: duckdb.DuckDBPyConnection, name: str) -> list[str]:
    """The folders a name (a bookmark's `?name=`, a link) means: the one spelled exactly
    so, else those that are the same name in another Unicode form; [] for none."""
    classes = [c for c, _ in _all_classes(con)]
    if name in classes:
        return [name]
    want = nfc(name)
    return [c for c in classes if nfc(c) == want]


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
