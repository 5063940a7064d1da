"""Images as the dashboard shows them: rows of the `images` view, and their faces."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import duckdb

from store.meta import model
from store.sql import first_row, records


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


# The `images` view's columns an ImageInfo is made of (_image reads them by name).
_IMAGE_COLUMNS = """image_id, path, class, hash, status, message, faces,
    box_left, box_top, box_right, box_bottom, whole_image, width, height, candidates"""


def _image(row: dict[str, Any]) -> ImageInfo:
    corners = (row["box_left"], row["box_top"], row["box_right"], row["box_bottom"])
    box = None if row["box_left"] is None or row["box_right"] is None else corners
    return ImageInfo(
        id=row["image_id"],
        path=row["path"],
        klass=row["class"],
        hash=row["hash"],
        status=row["status"],
        message=row["message"],
        faces=row["faces"],
        box=box,
        whole_image=bool(row["whole_image"]),
        width=row["width"],
        height=row["height"],
        candidates=int(row["candidates"] or 0),
    )


def images_where(
    con: duckdb.DuckDBPyConnection, where: str, params: list[Any] | dict[str, Any] | None = None
) -> list[ImageInfo]:
    """Images of the `images` view matching a WHERE clause (and its ORDER BY, LIMIT)."""
    return [
        _image(r)
        for r in records(con, f"SELECT {_IMAGE_COLUMNS} FROM images WHERE {where}", params)
    ]


def images_by_id(con: duckdb.DuckDBPyConnection, ids: Iterable[int]) -> dict[int, ImageInfo]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    return {i.id: i for i in images_where(con, "image_id IN (SELECT unnest(?))", [wanted])}


def images_by_path(con: duckdb.DuckDBPyConnection, paths: Iterable[str]) -> dict[str, ImageInfo]:
    wanted = sorted(set(paths))
    if not wanted:
        return {}
    return {i.path: i for i in images_where(con, "path IN (SELECT unnest(?))", [wanted])}


def image_by_path(con: duckdb.DuckDBPyConnection, path: str) -> ImageInfo | None:
    found = images_where(con, "path = ?", [path])
    return found[0] if found else None


def count_images(
    con: duckdb.DuckDBPyConnection, where: str, params: list[Any] | dict[str, Any] | None = None
) -> int:
    row = first_row(con, f"SELECT count(*) FROM images WHERE {where}", params)
    return int(row[0]) if row else 0


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
                  fc.face = coalesce(f.face, 0) AS chosen
           FROM files f JOIN faces fc ON fc.hash = f.hash AND fc.model = ?
           WHERE f.id = ? ORDER BY fc.face""",
        [model(con), image.id],
    ).fetchall()
    return [
        DetectedFace(index=int(face), box=(left, top, right, bottom), chosen=bool(chosen))
        for face, left, top, right, bottom, chosen in rows
    ]
