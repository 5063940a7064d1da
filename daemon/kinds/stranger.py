"""stranger(i in A): an image matches no one in its folder, nor any other folder.

The ratio "not A's person" alone (`Statistics.not_own`), prior STRANGER_RATE: for an
image no other folder claims well enough to call it misfiled (an image gets the likelier
of the two). Accepting quarantines the image.

Id: `stranger:<content hash>:<folder id of A>`.
"""

from __future__ import annotations

import numpy as np

from daemon.kinds.base import Described, FromStatistics, Scene, image_id
from daemon.kinds.stats import MIN_CONFIDENCE, Found, Statistics, odds_to_probability
from store.vocab import Kind

# Prior odds: about one image in a hundred is a stranger to every folder.
STRANGER_RATE = 0.01


class Stranger(FromStatistics):
    kind = Kind.STRANGER

    def find(self, stats: Statistics) -> list[Found]:
        multi, codes, own_n = stats.multi, stats.codes, stats.own_n
        p = odds_to_probability(stats.not_own * STRANGER_RATE)
        # In a folder of two that do not match, the evidence is the same for both: each is
        # the stranger with half the probability, and one suggestion says it (the image
        # that comes closer to some other folder: more likely filed from elsewhere).
        pairs2 = multi[own_n[multi] == 2]
        if len(pairs2):
            best_x = stats.claims.x
            p[pairs2] *= 0.5
            order = pairs2[np.lexsort((-best_x[pairs2], codes[pairs2]))]
            second = np.r_[False, codes[order][1:] == codes[order][:-1]]
            p[order[second]] = 0.0
        return [
            Found(
                self.kind,
                float(p[i]),
                int(codes[i]),
                -1,
                int(i),
                float(stats.own[i]),
                float(stats.own[i]),
                int(own_n[i]),
            )
            # A foreign group's images are one `mixed` suggestion (daemon/kinds/mixed.py).
            for i in multi[(p[multi] >= MIN_CONFIDENCE) & ~stats.grouped[multi]]
        ]

    def describe(self, found: Found, scene: Scene) -> Described:
        i = found.image
        a_name = scene.name(found.folder_a)
        fa = scene.folder(found.folder_a)
        assert fa is not None
        h = scene.hashes[i]
        sid = image_id(self.kind, h, fa)
        own = [j for j in scene.members[found.folder_a] if j != i]
        own_text, pairs = scene.block([i], own)
        text = (
            f"matches no one in {a_name}: {own_text}; no other folder matches it "
            f"well (confidence {found.confidence:.2f})"
        )
        row = self.row(found, scene, sid, (fa, None), (a_name, None), text, image=i)
        return Described(row, scene.evidence(sid, pairs))


KIND = Stranger()
