"""same_person(A, B): two folders hold one person.

x = cosine of the two folders' own-person centroids (a mixed folder's foreign groups
left out, daemon/kinds/stats.py): when a foreign group explains the match, the `mixed`
suggestion (daemon/kinds/mixed.py) stands instead, and a merge would bury the folder's
own person. "Different people": the fitted tail of x over
random folder pairs of the same size classes. "One person": the density of x between two
disjoint groups of those sizes drawn inside folders. Prior: SPLIT_RATE of the folders
have a twin, one of F. A folder of one image needs no special rule: its centroid is its
face. Candidates: the folder pairs the stored match lists name, and every folder pair
whose centroids different people reach less than 1 time in 1,000, looked for only from
where a pair of the sizes present can still reach the queue's floor (`reach`: with many
folders the prior of one in F asks far more than 1 in 1,000).

Id: `same:<folder id>:<folder id>`, the smaller first.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from itertools import combinations

import numpy as np

from daemon.kinds.base import Described, FromStatistics, Scene
from daemon.kinds.stats import (
    CANDIDATE_Z,
    MIN_CONFIDENCE,
    SIZE_EDGES,
    Found,
    Statistics,
    above,
    odds_to_probability,
    reach,
)
from daemon.snapshot import Snapshot
from store.queries.person import nfc, unicode_form
from store.suggestions import SuggestionRow
from store.vocab import Kind

# Prior odds: a few folders in a hundred have a twin under another name (one of F).
SPLIT_RATE = 0.05


def suggestion_id(folder_a: int, folder_b: int) -> str:
    return Kind.SAME_PERSON.rules.id(folder_a, folder_b)


class SamePerson(FromStatistics):
    kind = Kind.SAME_PERSON

    def by_name(self, snap: Snapshot, folder_of_class: dict[str, int]) -> list[Described]:
        return unicode_twins(snap, folder_of_class)

    def find(self, stats: Statistics) -> list[Found]:
        cn, codes, sizes, cls, n_f = stats.cn, stats.codes, stats.sizes, stats.cls, stats.n_f
        nulls, same = stats.nulls, stats.same
        multi_f = np.flatnonzero(sizes >= 2)
        bar = nulls.pooled_folder.loc + CANDIDATE_Z * nulls.pooled_folder.scale
        # Only where a pair can reach the queue's floor (odds SPLIT_RATE / F times its
        # ratio), for the size classes a pair can have.
        floor_ratio = MIN_CONFIDENCE / (1 - MIN_CONFIDENCE) * n_f / SPLIT_RATE
        q_cls, a_cls = np.unique(cls[multi_f]).tolist(), np.unique(cls).tolist()
        class_pairs = {(min(ca, cb), max(ca, cb)) for ca in q_cls for cb in a_cls}
        curves = [(nulls.folder_tail(ca, cb), same(ca, cb)) for ca, cb in sorted(class_pairs)]
        bar = reach(bar, floor_ratio * (1 - 1e-9), curves)
        near_r, near_c = (
            above(cn[multi_f], cn, bar, exclude=multi_f)
            if np.isfinite(bar)
            else (np.empty(0, np.int64), np.empty(0, np.int64))
        )
        fa = np.concatenate([codes[stats.src], multi_f[near_r]])
        fb = np.concatenate([codes[stats.dst], near_c])
        if not len(fa):
            return []
        key = np.unique(np.minimum(fa, fb).astype(np.int64) * n_f + np.maximum(fa, fb))
        a, b = key // n_f, key % n_f
        key = key[a != b]
        a, b = key // n_f, key % n_f
        x = np.einsum("ij,ij->i", cn[a], cn[b])
        null = np.empty(len(a))
        genuine = np.empty(len(a))
        n_cls = len(SIZE_EDGES)
        pair_cls = np.minimum(cls[a], cls[b]) * n_cls + np.maximum(cls[a], cls[b])
        for pc in np.unique(pair_cls).tolist():
            ca, cb = divmod(pc, n_cls)
            sel = pair_cls == pc
            null[sel] = nulls.folder_tail(ca, cb).pdf(x[sel])
            genuine[sel] = same(ca, cb)(x[sel])
        ratio = genuine / np.maximum(null, 1e-300)
        conf = odds_to_probability(ratio * SPLIT_RATE / n_f)
        return [
            Found(
                self.kind,
                float(conf[j]),
                int(a[j]),
                int(b[j]),
                -1,
                float(x[j]),
                images=int(sizes[a[j]] + sizes[b[j]]),
            )
            for j in np.flatnonzero(conf >= MIN_CONFIDENCE)
        ]

    def describe(self, found: Found, scene: Scene) -> Described:
        a_name, b_name = scene.name(found.folder_a), scene.name(found.folder_b)
        fa, fb = scene.folder(found.folder_a), scene.folder(found.folder_b)
        assert fa is not None and fb is not None
        sid = suggestion_id(fa, fb)
        left, right = scene.members[found.folder_a], scene.members[found.folder_b]
        text, pairs = scene.block(left, right)
        text = (
            f"{a_name} ({len(left)}) and {b_name} ({len(right)}): {text}; folder "
            f"faces agree at {found.stat:.2f} (confidence {found.confidence:.2f})"
        )
        row = self.row(found, scene, sid, (fa, fb), (a_name, b_name), text)
        return Described(row, scene.evidence(sid, pairs))


def unicode_twins(snap: Snapshot, folder_of_class: dict[str, int]) -> list[Described]:
    """Two folders whose names differ only by Unicode normalisation (macOS writes names
    in NFD, a keyboard types NFC): one person by their names alone, whatever the faces
    say, so certain (confidence 1.0) and first in the queue. The merge keeps the NFC name
    (dashboard/cards/same_person.py)."""
    forms: dict[str, list[str]] = defaultdict(list)
    for klass in sorted(folder_of_class):
        forms[nfc(klass)].append(klass)
    out: list[Described] = []
    if all(len(spelled) < 2 for spelled in forms.values()):
        return out
    sizes = Counter(snap.file_classes)
    for name, spelled in sorted(forms.items()):
        for a, b in combinations(spelled, 2):
            fa, fb = folder_of_class[a], folder_of_class[b]
            text = (
                f"{a} ({sizes[a]}) and {b} ({sizes[b]}): the same name in two Unicode "
                f"forms ({unicode_form(a)} and {unicode_form(b)}; a keyboard types NFC, macOS "
                f"writes NFD): one folder under the NFC name {name}"
            )
            row = SuggestionRow(
                id=suggestion_id(fa, fb),
                kind=Kind.SAME_PERSON,
                model=None,
                folder_a=fa,
                folder_b=fb,
                hash=None,
                file_id=None,
                rank_score=1.0,
                strength=1.0,
                images=sizes[a] + sizes[b],
                evidence=text,
                class_a_name=a,
                class_b_name=b,
                path_name=None,
            )
            out.append(Described(row))
    return out


KIND = SamePerson()
