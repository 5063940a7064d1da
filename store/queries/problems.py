"""The problems page: images whose encoding went wrong or was doubtful, and hubs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb

from store.queries.images import ImageInfo, count_images, images_where
from store.sql import first_row
from store.vocab import USABLE, Status

ENCODER_STATUSES = (Status.NO_FACE, Status.MULTI_FACE, Status.UNREADABLE, Status.ERROR)
# Not a status of its own: an image with a face encoded as a whole picture, because no
# face box was found in it.
WHOLE_IMAGE = "whole_image"
PROBLEM_STATUSES = (*ENCODER_STATUSES, WHOLE_IMAGE)


def _problem_where(wanted: Sequence[str]) -> str:
    parts = []
    if any(s in ENCODER_STATUSES for s in wanted):
        parts.append("status IN (SELECT unnest($statuses))")
    if WHOLE_IMAGE in wanted:
        parts.append("(coalesce(whole_image, false) AND status IN (SELECT unnest($usable)))")
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
    params: dict[str, Any] = {}
    if "$statuses" in where:
        params["statuses"] = [str(s) for s in wanted if s in ENCODER_STATUSES]
    if "$usable" in where:
        params["usable"] = [str(s) for s in USABLE]
    images = images_where(
        con, f"{where} ORDER BY status, path LIMIT {int(limit)} OFFSET {int(offset)}", params
    )
    return images, count_images(con, where, params)


def hub_images(
    con: duckdb.DuckDBPyConnection, limit: int = 60, offset: int = 0
) -> tuple[list[ImageInfo], int]:
    """One page of the images matching more others than the store keeps pairs for, most
    candidates first, and how many there are."""
    images = images_where(
        con,
        "path IN (SELECT path FROM hubs) ORDER BY candidates DESC, path LIMIT ? OFFSET ?",
        [int(limit), int(offset)],
    )
    total = first_row(con, "SELECT count(*) FROM hubs")
    return images, int(total[0]) if total else 0
