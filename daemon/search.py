"""Search by photo: the stored faces nearest to the face in one photo.

The photo is encoded with the store's own model (the same encoder options the daemon
used), then ranked against every stored face by cosine; the score shown is the store's
calibrated score, the one pairs are filtered on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from daemon.config import Settings
from daemon.encoders import registry
from daemon.encoders.base import encode_file
from store import meta
from store.db import Store
from store.queries.search import StoredFaces, face_info, stored_faces
from store.vectors import normalise
from store.vocab import USABLE


class SearchError(RuntimeError):
    """The search cannot run; the message says why in words."""


@dataclass(frozen=True)
class Hit:
    rank: int
    klass: str
    path: str
    score: float
    cosine: float
    box: tuple[int, int, int, int] | None


@dataclass
class SearchResult:
    photo: str
    faces: int
    box: tuple[int, int, int, int] | None
    model: str
    hits: list[Hit]
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "photo": self.photo,
            "faces": self.faces,
            "box": self.box,
            "model": self.model,
            "results": [
                {
                    "rank": h.rank,
                    "folder": h.klass,
                    "path": h.path,
                    "score": h.score,
                    "cosine": h.cosine,
                    "box": h.box,
                }
                for h in self.hits
            ],
            "seconds": {k: round(v, 4) for k, v in self.timings.items()},
        }


def rank(faces: StoredFaces, query: np.ndarray, n: int) -> list[tuple[int, float, float, int]]:
    """The n stored images nearest to `query` by their best face, best first:
    (file id, score, cosine, face)."""
    if len(faces.ids) == 0 or n <= 0:
        return []
    q = normalise(np.asarray(query, dtype=np.float32).reshape(1, -1))[0]
    if faces.unit.shape[1] != q.shape[0]:
        raise SearchError(
            f"the photo's embedding has {q.shape[0]} numbers, the store's {faces.unit.shape[1]}"
        )
    cos = faces.unit @ q
    # An image once, by its best face: take a few spare rows for images with several.
    take = min(len(cos), n * 4)
    top = np.argpartition(-cos, take - 1)[:take]
    top = top[np.lexsort((faces.ids[top], -cos[top]))]
    _, first = np.unique(faces.ids[top], return_index=True)
    top = top[np.sort(first)][:n]
    scores = faces.calibration.score(cos[top]) if faces.calibration else cos[top]
    return [
        (int(faces.ids[j]), round(float(s), 4), round(float(cos[j]), 4), int(faces.faces[j]))
        for j, s in zip(top, np.atleast_1d(scores), strict=True)
    ]


def search(settings: Settings, photo: Path, n: int = 10) -> SearchResult:
    """Encode the photo's face with the store's model, then rank every stored face."""
    timings: dict[str, float] = {}
    if not Path(photo).is_file():
        raise SearchError(f"{photo} is not a file")
    started = time.perf_counter()
    with Store(settings.db, lock_timeout=settings.lock_timeout).reading() as con:
        model = meta.get_meta(con, "model")
    timings["open"] = time.perf_counter() - started
    if model is None:
        raise SearchError(f"the store {settings.db} holds no encoded face yet: scan first")
    wanted = registry.model_id(settings)
    if wanted != model:
        raise SearchError(
            f"the store was encoded with {model}, these settings give {wanted}: "
            "search with the settings the daemon uses (facelint.toml)"
        )
    started = time.perf_counter()
    encoder = registry.build(settings)
    timings["load_model"] = time.perf_counter() - started
    started = time.perf_counter()
    enc = encode_file(encoder, Path(photo), settings.max_pixels)
    timings["encode"] = time.perf_counter() - started
    if enc.vector is None or enc.status not in USABLE:
        raise SearchError(f"no usable face in {photo}: {enc.message or enc.status}")
    # The store side: one short read-only open for the vectors, the ranking, the names.
    started = time.perf_counter()
    with Store(settings.db, lock_timeout=settings.lock_timeout).reading() as con:
        faces = stored_faces(con)
        timings["read"] = time.perf_counter() - started
        ranked = rank(faces, enc.vector, n)
        timings["rank"] = time.perf_counter() - started - timings["read"]
        info = face_info(con, [r[0] for r in ranked], [r[3] for r in ranked])
    timings["store"] = time.perf_counter() - started
    hits = [
        Hit(k + 1, info[i].klass, info[i].path, score, cosine, info[i].box)
        for k, (i, score, cosine, _) in enumerate(r for r in ranked if r[0] in info)
    ]
    return SearchResult(str(photo), enc.detected, enc.box, model, hits, timings)
