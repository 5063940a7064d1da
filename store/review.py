"""The review dashboard's queries and writes: pairs to review, a class's images, problem
images, decisions and the file-action log.

Every function takes a connection the caller opened for one short unit of work
(store.connection.open_store), so the dashboard never holds the store's lock.

Decisions are keyed by the two images' content hashes (least first, like the `pairs`
view joins them): a decision survives moves, renames and re-scans, and a pair of the
same two contents found again anywhere is recognised as already decided.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb

from store.clock import utcnow
from store.reports import summary

# A decision on a pair. "skip" means "not now": it leaves the unreviewed list and waits
# under the "skipped" filter until someone decides the pair or clears the skip.
DECISIONS = ("different", "same", "removed", "skipped")

# Review-state filters of the pairs page, and the SQL each one means.
REVIEW_STATES: dict[str, str] = {
    "unreviewed": "d.decision IS NULL",
    "skipped": "d.decision = 'skipped'",
    "different": "d.decision = 'different'",
    "same": "d.decision = 'same'",
    "removed": "d.decision = 'removed'",
    "decided": "d.decision IS NOT NULL AND d.decision <> 'skipped'",
    "all": "true",
}

ENCODER_STATUSES = ("no_face", "multi_face", "unreadable", "error")
WHOLE_IMAGE = "whole_image"
PROBLEM_STATUSES = (*ENCODER_STATUSES, WHOLE_IMAGE)

# Actions that moved a file and can be undone; "undo" rows record the undoing itself.
FILE_ACTIONS = ("move", "quarantine")


@dataclass(frozen=True)
class ImageInfo:
    id: int
    path: str  # relative to the data root, POSIX separators
    klass: str
    hash: str | None
    status: str | None  # None: not encoded yet
    message: str | None
    faces: int | None
    box: tuple[int, int, int, int] | None  # left, top, right, bottom in image pixels
    whole_image: bool
    width: int | None
    height: int | None
    candidates: int

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


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


@dataclass(frozen=True)
class ActionRow:
    id: int
    acted_at: datetime
    who: str | None
    action: str
    src: str
    dst: str
    hash_a: str | None
    hash_b: str | None
    undone_at: datetime | None
    undo_of: int | None

    @property
    def undoable(self) -> bool:
        return self.action in FILE_ACTIONS and self.undone_at is None


# -- reading -------------------------------------------------------------------------------

_IMAGE_COLUMNS = """image_id, path, class, hash, status, message, faces,
    box_left, box_top, box_right, box_bottom, whole_image, width, height, candidates"""


def _image(row: Sequence[Any]) -> ImageInfo:
    box = None if row[7] is None or row[9] is None else (row[7], row[8], row[9], row[10])
    return ImageInfo(
        id=row[0],
        path=row[1],
        klass=row[2],
        hash=row[3],
        status=row[4],
        message=row[5],
        faces=row[6],
        box=box,
        whole_image=bool(row[11]),
        width=row[12],
        height=row[13],
        candidates=int(row[14] or 0),
    )


def images_by_id(con: duckdb.DuckDBPyConnection, ids: Iterable[int]) -> dict[int, ImageInfo]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = con.execute(
        f"SELECT {_IMAGE_COLUMNS} FROM images WHERE image_id IN (SELECT unnest(?))", [wanted]
    ).fetchall()
    return {r[0]: _image(r) for r in rows}


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


def _decisions_of(
    con: duckdb.DuckDBPyConnection, hash_pairs: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """Decisions on the given content pairs, keyed (least hash, greatest hash)."""
    keys = sorted({(min(a, b), max(a, b)) for a, b in hash_pairs})
    if not keys:
        return {}
    rows = con.execute(
        """SELECT d.hash_a, d.hash_b, d.decision FROM decisions d
           JOIN (SELECT unnest(?) AS a, unnest(?) AS b) k ON k.a = d.hash_a AND k.b = d.hash_b""",
        [[k[0] for k in keys], [k[1] for k in keys]],
    ).fetchall()
    return {(r[0], r[1]): r[2] for r in rows}


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
    decisions = _decisions_of(con, [(a.hash, b.hash) for *_, a, b in found if a.hash and b.hash])
    return [
        PairView(
            lo,
            hi,
            score,
            cosine,
            first_seen,
            decisions.get((min(a.hash or "", b.hash or ""), max(a.hash or "", b.hash or ""))),
            a,
            b,
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
    groups = [PairGroup(r[0], r[1], int(r[2]), float(r[3]), int(r[4])) for r in rows]
    return groups, int(rows[0][5]), int(rows[0][6])


def class_images(
    con: duckdb.DuckDBPyConnection, klass: str, limit: int, offset: int = 0
) -> tuple[list[ImageInfo], int]:
    """One page of a class's images by path, and how many it has in all."""
    rows = con.execute(
        f"SELECT {_IMAGE_COLUMNS} FROM images WHERE class = ? ORDER BY path LIMIT ? OFFSET ?",
        [klass, int(limit), int(offset)],
    ).fetchall()
    total = con.execute("SELECT count(*) FROM files WHERE class = ?", [klass]).fetchone()
    return [_image(r) for r in rows], int(total[0]) if total else 0


def _problem_where(wanted: Sequence[str]) -> str:
    """Images with one of the wanted statuses; "whole_image" is not a status of its own
    but an `ok` image encoded as a whole picture because no face box was found in it."""
    parts = []
    if any(s in ENCODER_STATUSES for s in wanted):
        parts.append("status IN (SELECT unnest($statuses))")
    if WHOLE_IMAGE in wanted:
        parts.append("(coalesce(whole_image, false) AND status IN ('ok', 'multi_face'))")
    return " OR ".join(parts) or "false"


def problems(
    con: duckdb.DuckDBPyConnection,
    statuses: Sequence[str] = PROBLEM_STATUSES,
    limit: int = 60,
    offset: int = 0,
) -> tuple[list[ImageInfo], int]:
    """Images whose encoding went wrong or was doubtful, and how many there are."""
    wanted = [s for s in statuses if s in PROBLEM_STATUSES]
    if not wanted:
        return [], 0
    where = _problem_where(wanted)
    params: dict[str, Any] = {"statuses": [s for s in wanted if s in ENCODER_STATUSES]}
    if "$statuses" not in where:
        params.pop("statuses")
    rows = con.execute(
        f"""SELECT {_IMAGE_COLUMNS} FROM images WHERE {where}
            ORDER BY status, path LIMIT {int(limit)} OFFSET {int(offset)}""",
        params,
    ).fetchall()
    total = con.execute(f"SELECT count(*) FROM images WHERE {where}", params).fetchone()
    return [_image(r) for r in rows], int(total[0]) if total else 0


def hub_images(
    con: duckdb.DuckDBPyConnection, limit: int = 60, offset: int = 0
) -> tuple[list[ImageInfo], int]:
    """One page of the images matching more others than the store keeps pairs for, most
    candidates first, and how many there are."""
    rows = con.execute(
        f"""SELECT {_IMAGE_COLUMNS} FROM images WHERE path IN (SELECT path FROM hubs)
            ORDER BY candidates DESC, path LIMIT ? OFFSET ?""",
        [int(limit), int(offset)],
    ).fetchall()
    total = con.execute("SELECT count(*) FROM hubs").fetchone()
    return [_image(r) for r in rows], int(total[0]) if total else 0


@dataclass(frozen=True)
class DetectedFace:
    """One face the encoder found in an image; `chosen` marks the one standing for it."""

    index: int
    box: tuple[int, int, int, int]
    chosen: bool


def detected_faces(con: duckdb.DuckDBPyConnection, image: ImageInfo) -> list[DetectedFace]:
    """Every face encoded in an image under the store's model, the one that stands for
    it in its folder marked as chosen."""
    if image.hash is None:
        return []
    rows = con.execute(
        """SELECT fc.face, fc.box_left, fc.box_top, fc.box_right, fc.box_bottom,
                  fc.face = coalesce(f.face, 0)
           FROM files f JOIN faces fc ON fc.hash = f.hash
               AND fc.model = (SELECT value FROM meta WHERE key = 'model')
           WHERE f.id = ? ORDER BY fc.face""",
        [image.id],
    ).fetchall()
    return [DetectedFace(int(r[0]), (r[1], r[2], r[3], r[4]), bool(r[5])) for r in rows]


def score_histogram(con: duckdb.DuckDBPyConnection, bins: int = 30) -> list[tuple[float, str, int]]:
    """(bin's lowest score, decision group, pairs) over the stored pairs: "same" (same
    person or removed), "different", or "open" (no decision or skipped)."""
    rows = con.execute(
        f"""SELECT floor(p.score * {int(bins)}) / {int(bins)} AS lo,
                   CASE WHEN d.decision IN ('same', 'removed') THEN 'same'
                        WHEN d.decision = 'different' THEN 'different'
                        ELSE 'open' END AS grp,
                   count(*)
            FROM pair_rows p JOIN files fa ON fa.id = p.lo JOIN files fb ON fb.id = p.hi
            LEFT JOIN decisions d ON d.hash_a = least(fa.hash, fb.hash)
                AND d.hash_b = greatest(fa.hash, fb.hash)
            GROUP BY ALL ORDER BY lo, grp""",
    ).fetchall()
    return [(float(r[0]), str(r[1]), int(r[2])) for r in rows]


def threshold(con: duckdb.DuckDBPyConnection) -> float | None:
    """The lowest score the store keeps pairs for (nothing below it is stored)."""
    # The compare step records what it ran with as "threshold=0.4;k=20".
    row = con.execute("SELECT value FROM meta WHERE key = 'compare_params'").fetchone()
    if row is None or row[0] is None:
        return None
    for part in str(row[0]).split(";"):
        name, _, value = part.partition("=")
        if name.strip() == "threshold":
            try:
                return float(value)
            except ValueError:
                return None
    return None


def image_by_path(con: duckdb.DuckDBPyConnection, path: str) -> ImageInfo | None:
    row = con.execute(f"SELECT {_IMAGE_COLUMNS} FROM images WHERE path = ?", [path]).fetchone()
    return None if row is None else _image(row)


def totals(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """The store's totals and calibration, as the status command shows them (what the
    calibration says of the threshold the pairs were stored with)."""
    out = summary(con, threshold(con) or 0.4)
    out["decisions"] = dict(
        con.execute("SELECT decision, count(*) FROM decisions GROUP BY 1").fetchall()
    )
    return out


# -- decisions -----------------------------------------------------------------------------


def record_decision(
    con: duckdb.DuckDBPyConnection,
    hash_1: str,
    hash_2: str,
    decision: str,
    who: str,
    note: str | None = None,
    now: datetime | None = None,
) -> None:
    """Set (or replace) the decision on the pair of these two contents."""
    if decision not in DECISIONS:
        raise ValueError(f"unknown decision {decision!r}: one of {', '.join(DECISIONS)}")
    con.execute(
        """INSERT INTO decisions VALUES (least($h1, $h2), greatest($h1, $h2), $decision,
                                         $note, $who, $now)
           ON CONFLICT (hash_a, hash_b) DO UPDATE SET decision = excluded.decision,
               note = excluded.note, decided_by = excluded.decided_by,
               decided_at = excluded.decided_at""",
        {
            "h1": hash_1,
            "h2": hash_2,
            "decision": decision,
            "note": note,
            "who": who,
            "now": now or utcnow(),
        },
    )


def clear_decision(
    con: duckdb.DuckDBPyConnection, hash_1: str, hash_2: str, only_if: str | None = None
) -> bool:
    """Put the pair back into the unreviewed list; with `only_if`, only when its decision
    is still that one (an undo must not erase a decision taken since)."""
    row = con.execute(
        """DELETE FROM decisions WHERE hash_a = least($h1, $h2) AND hash_b = greatest($h1, $h2)
               AND ($only IS NULL OR decision = $only)
           RETURNING decision""",
        {"h1": hash_1, "h2": hash_2, "only": only_if},
    ).fetchone()
    return row is not None


def decision_for(con: duckdb.DuckDBPyConnection, hash_1: str, hash_2: str) -> str | None:
    row = con.execute(
        "SELECT decision FROM decisions WHERE hash_a = least(?, ?) AND hash_b = greatest(?, ?)",
        [hash_1, hash_2, hash_1, hash_2],
    ).fetchone()
    return None if row is None else str(row[0])


# -- the file-action log -------------------------------------------------------------------

_ACTION_COLUMNS = "id, acted_at, who, action, src, dst, hash_a, hash_b, undone_at, undo_of"


def log_action(
    con: duckdb.DuckDBPyConnection,
    action: str,
    src: str,
    dst: str,
    who: str,
    hashes: tuple[str, str] | None = None,
    undo_of: int | None = None,
    now: datetime | None = None,
) -> int:
    """Record a file action (root-relative paths); returns its id."""
    h1, h2 = hashes if hashes is not None else (None, None)
    row = con.execute(
        f"""INSERT INTO actions ({_ACTION_COLUMNS})
            VALUES (nextval('action_ids'), $now, $who, $action, $src, $dst,
                    least($h1, $h2), greatest($h1, $h2), NULL, $undo_of)
            RETURNING id""",
        {
            "now": now or utcnow(),
            "who": who,
            "action": action,
            "src": src,
            "dst": dst,
            "h1": h1,
            "h2": h2,
            "undo_of": undo_of,
        },
    ).fetchone()
    assert row is not None
    return int(row[0])


def mark_undone(
    con: duckdb.DuckDBPyConnection, action_id: int, now: datetime | None = None
) -> None:
    con.execute(
        "UPDATE actions SET undone_at = ? WHERE id = ? AND undone_at IS NULL",
        [now or utcnow(), action_id],
    )


def get_action(con: duckdb.DuckDBPyConnection, action_id: int) -> ActionRow | None:
    row = con.execute(
        f"SELECT {_ACTION_COLUMNS} FROM actions WHERE id = ?", [int(action_id)]
    ).fetchone()
    return None if row is None else ActionRow(*row)


def recent_actions(
    con: duckdb.DuckDBPyConnection, limit: int = 200, offset: int = 0
) -> list[ActionRow]:
    rows = con.execute(
        f"SELECT {_ACTION_COLUMNS} FROM actions ORDER BY id DESC LIMIT ? OFFSET ?",
        [int(limit), int(offset)],
    ).fetchall()
    return [ActionRow(*r) for r in rows]


def count_actions(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("SELECT count(*) FROM actions").fetchall()
    return int(row[0][0]) if row else 0


def last_moves_from(con: duckdb.DuckDBPyConnection, paths: Iterable[str]) -> dict[str, ActionRow]:
    """For each path, the latest file action (not undone) that moved a file away from it:
    tells a reviewer where a file went before the daemon has caught up."""
    wanted = sorted(set(paths))
    if not wanted:
        return {}
    rows = con.execute(
        f"""SELECT {_ACTION_COLUMNS} FROM actions
            WHERE action IN (SELECT unnest(?)) AND undone_at IS NULL
              AND src IN (SELECT unnest(?))
            ORDER BY id""",
        [list(FILE_ACTIONS), wanted],
    ).fetchall()
    return {r[4]: ActionRow(*r) for r in rows}


# -- groups of file actions (schema 3) -------------------------------------------------------


def new_batch(con: duckdb.DuckDBPyConnection) -> int:
    """A fresh batch number: the file actions logged under it are undone together."""
    row = con.execute("SELECT nextval('action_batches')").fetchone()
    assert row is not None
    return int(row[0])


def tag_actions(
    con: duckdb.DuckDBPyConnection,
    action_ids: Sequence[int],
    batch: int | None,
    suggestion: str | None,
) -> None:
    """Mark logged actions as one batch, and as the doing of a suggestion's decision."""
    con.execute(
        "UPDATE actions SET batch = ?, suggestion = ? WHERE id IN (SELECT unnest(?))",
        [batch, suggestion, [int(i) for i in action_ids]],
    )


def action_group(con: duckdb.DuckDBPyConnection, action_id: int) -> list[ActionRow]:
    """The action and every other one of its batch, latest first (the order to undo them)."""
    rows = con.execute(
        f"""SELECT {_ACTION_COLUMNS} FROM actions
            WHERE id = $id OR batch = (SELECT batch FROM actions WHERE id = $id)
            ORDER BY id DESC""",
        {"id": int(action_id)},
    ).fetchall()
    return [ActionRow(*r) for r in rows]


def action_suggestion(con: duckdb.DuckDBPyConnection, action_id: int) -> str | None:
    """The suggestion whose decision a file action carried out, if any."""
    row = con.execute("SELECT suggestion FROM actions WHERE id = ?", [int(action_id)]).fetchone()
    return None if row is None or row[0] is None else str(row[0])


def suggestion_actions(con: duckdb.DuckDBPyConnection, sid: str) -> list[ActionRow]:
    """The file actions (not undone) that carried out the decision on a suggestion."""
    rows = con.execute(
        f"""SELECT {_ACTION_COLUMNS} FROM actions
            WHERE suggestion = ? AND undone_at IS NULL AND action IN (SELECT unnest(?))
            ORDER BY id DESC""",
        [sid, list(FILE_ACTIONS)],
    ).fetchall()
    return [ActionRow(*r) for r in rows]


def images_by_path(con: duckdb.DuckDBPyConnection, paths: Iterable[str]) -> dict[str, ImageInfo]:
    wanted = sorted(set(paths))
    if not wanted:
        return {}
    rows = con.execute(
        f"SELECT {_IMAGE_COLUMNS} FROM images WHERE path IN (SELECT unnest(?))", [wanted]
    ).fetchall()
    return {r[1]: _image(r) for r in rows}
