"""Which face stands for an image in its folder.

In a scraped set many images hold several faces, and the folder's label means one of
them. The face that matches the rest of its folder best stands for the image; when the
folder cannot tell (one image, or no face matches well), the most central of the large
faces does: news photos and crops are centred on the person they are filed under, while
a bystander is often as large or larger (on LFW most of the highest-scoring false pairs
were two people's crops of one news photo, the encoder having taken the bystander).
Only the standing face takes part in comparisons, so a bystander's face never becomes
evidence that two folders are one person.
"""

from __future__ import annotations

import numpy as np

# Faces smaller than this fraction of the largest one are not candidates by default.
LARGE_FRACTION = 1 / 3
# A face must match its folder by this much more (raw cosine) than the default face to
# replace it: below it the two are noise apart and the default rule is more reliable.
MARGIN = 0.02


def default_faces(
    face_start: np.ndarray,
    face_count: np.ndarray,
    boxes: np.ndarray,
    width: np.ndarray,
    height: np.ndarray,
) -> np.ndarray:
    """Per file, the row (into the face arrays) of the most central large face."""
    rows = face_start.copy()
    for i in np.flatnonzero(face_count > 1):
        s, n = int(face_start[i]), int(face_count[i])
        b = boxes[s : s + n].astype(np.float64)
        if (b < 0).any():
            continue
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        large = area >= LARGE_FRACTION * area.max()
        cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
        w, h = max(1, int(width[i])), max(1, int(height[i]))
        off = np.hypot(cx / w - 0.5, cy / h - 0.5)
        off[~large] = np.inf
        rows[i] = s + int(np.argmin(off))
    return rows


def choose_faces(
    codes: np.ndarray,
    hashes: list[str],
    face_start: np.ndarray,
    face_count: np.ndarray,
    boxes: np.ndarray,
    unit: np.ndarray,
    width: np.ndarray,
    height: np.ndarray,
    same_cos: float,
    picks: dict[int, int] | None = None,
    rounds: int = 2,
) -> np.ndarray:
    """Per file, the row into the face arrays of the face that stands for it.

    `codes` are folder codes per file, `unit` the unit-length face vectors, `same_cos`
    the raw cosine at which two faces count as one person, `picks` a reviewer's choice
    (file index -> face row), which always wins.
    """
    rows = default_faces(face_start, face_count, boxes, width, height)
    multi = np.flatnonzero(face_count > 1)
    if len(multi):
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.unique(codes))
        members = {
            int(codes[order[b]]): order[b:e]
            for b, e in zip(bounds, np.r_[bounds[1:], len(order)], strict=True)
        }
        for _ in range(rounds):
            changed = False
            for i in multi:
                # Other files of the folder, not copies of this same content.
                others = [j for j in members[int(codes[i])] if hashes[j] != hashes[i]]
                if not others:
                    continue
                ref = unit[rows[others]]
                s, n = int(face_start[i]), int(face_count[i])
                affinity = (unit[s : s + n] @ ref.T).max(axis=1)
                best = int(np.argmax(affinity))
                current = int(rows[i]) - s
                if (
                    best != current
                    and affinity[best] >= same_cos
                    and affinity[best] - affinity[current] > MARGIN
                ):
                    rows[i] = s + best
                    changed = True
            if not changed:
                break
    for i, row in (picks or {}).items():
        rows[i] = row
    return rows
