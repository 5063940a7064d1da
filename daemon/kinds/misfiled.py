"""misfiled(i in A, B): an image belongs in another folder.

The likelihood ratio of image i against B's centroid (different people: the fitted tail
of image-to-folder cosines; one person: image-to-folder within folders), times the ratio
"not A's person" from how well i matches the rest of A. Prior: MISFILED_RATE, one of F.
Both are the shared `Statistics.claims` (daemon/kinds/stats.py): B is the folder that
claims i most. A and B are their own people (a mixed folder's foreign groups left out),
so A's genuine photos are not judged against a namesake who outnumbers them. Accepting
moves the image into B.

Id: `misfiled:<content hash>:<folder id of A>`.
"""

from __future__ import annotations

from daemon.kinds.base import Described, FromStatistics, Scene, image_id
from daemon.kinds.stats import MIN_CONFIDENCE, Found, Statistics
from store.vocab import Kind


class Misfiled(FromStatistics):
    kind = Kind.MISFILED

    def find(self, stats: Statistics) -> list[Found]:
        claims, multi = stats.claims, stats.multi
        best, dest = claims.confidence, claims.folder
        return [
            Found(
                self.kind,
                float(best[i]),
                int(stats.codes[i]),
                int(dest[i]),
                int(i),
                float(claims.x[i]),
                float(stats.own[i]),
                int(stats.own_n[i] + stats.sizes[dest[i]]),
            )
            # A foreign group's images are one `mixed` suggestion (daemon/kinds/mixed.py).
            for i in multi[(best[multi] >= MIN_CONFIDENCE) & ~stats.grouped[multi]]
        ]

    def describe(self, found: Found, scene: Scene) -> Described:
        i = found.image
        a_name, b_name = scene.name(found.folder_a), scene.name(found.folder_b)
        fa, fb = scene.folder(found.folder_a), scene.folder(found.folder_b)
        assert fa is not None
        h = scene.hashes[i]
        sid = image_id(self.kind, h, fa)
        own = [j for j in scene.members[found.folder_a] if j != i]
        own_text, _ = scene.block([i], own)
        text, pairs = scene.block([i], scene.members[found.folder_b])
        text = (
            f"matches {b_name}: {text}; its own folder {a_name}: {own_text} "
            f"(confidence {found.confidence:.2f})"
        )
        row = self.row(found, scene, sid, (fa, fb), (a_name, b_name), text, image=i)
        return Described(row, scene.evidence(sid, pairs))


KIND = Misfiled()
