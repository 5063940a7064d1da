"""mixed(G in A, B): a folder holds a group of another person, the person of folder B
(or of no folder: "unknown").

The statistics see each folder as a mixture (daemon/kinds/stats.py: `find_mixtures`):
groups whose centroids are as far apart as different folders' groups are, the folder's
own person (the group no other folder claims), and each foreign group matched against
every folder's own person. Confidence: the likelihood ratio "not the own person"
(different-people against one-person densities of groups of these sizes) times, with a
destination, the ratio "B's own person" (as same_person weighs folders), prior MIXED_RATE
one of F; without one, UNKNOWN_RATE. One suggestion stands for the whole group: its
images get no misfiled or stranger suggestion of their own.

The group is stored as the suggestion's image pairs: each member once as `a`, beside its
best match in B (or itself, for an unknown group: a pair of one image says nothing about
two people when a decision is recorded on the pairs).

Id: `mixed:<folder id of A>:<folder id of B>`, or `mixed:<folder id of A>:new-<digest of
the group's content hashes>` when no folder matches. Both survive rescans, renames and a
model switch; a destination's id survives the group gaining or losing an image.
"""

from __future__ import annotations

import hashlib

import numpy as np

from daemon.kinds.base import Described, EvidencePair, FromStatistics, Scene
from daemon.kinds.stats import MIN_CONFIDENCE, Found, Statistics
from store.vocab import Kind

# The prefix of an unknown group's id part: a folder id is all digits.
NEW = "new-"


def suggestion_id(folder: int, dest: int | None, contents: list[str]) -> str:
    if dest is not None:
        return Kind.MIXED.rules.id(folder, dest)
    digest = hashlib.blake2b("\n".join(sorted(contents)).encode(), digest_size=8).hexdigest()
    return Kind.MIXED.rules.id(folder, f"{NEW}{digest}")


class Mixed(FromStatistics):
    kind = Kind.MIXED

    def find(self, stats: Statistics) -> list[Found]:
        out = []
        for g in stats.mixtures.groups:
            if g.confidence < MIN_CONFIDENCE:
                continue
            own = int(stats.sizes[g.folder])
            dest_n = int(stats.sizes[g.dest]) if g.dest >= 0 else 0
            out.append(
                Found(
                    self.kind,
                    g.confidence,
                    g.folder,
                    g.dest,
                    -1,
                    g.x_dest if g.dest >= 0 else g.x_own,
                    g.x_own,
                    len(g.members) + own + dest_n,
                    tuple(int(i) for i in g.members),
                )
            )
        return out

    def describe(self, found: Found, scene: Scene) -> Described:
        group = list(found.group)
        in_group = set(group)
        a_name = scene.name(found.folder_a)
        fa = scene.folder(found.folder_a)
        assert fa is not None
        own = [j for j in scene.members[found.folder_a] if j not in in_group]
        fb = scene.folder(found.folder_b) if found.folder_b >= 0 else None
        b_name = scene.name(found.folder_b) if found.folder_b >= 0 else None
        sid = suggestion_id(fa, fb, [scene.hashes[i] for i in group])
        n = len(group)
        photos = f"{n} photo{'s' if n != 1 else ''}"
        own_text, _ = scene.block(group, own)
        pairs: list[EvidencePair]
        if b_name is not None:
            dest = scene.members[found.folder_b]
            text, _ = scene.block(group, dest)
            lead = (
                f"{a_name} holds {photos} that match {b_name} ({len(dest)} photos; {text}) "
                f"beside {len(own)} of its own"
            )
            scores = scene.cal.score(scene.unit[group] @ scene.unit[dest].T)
            best = np.argmax(scores, axis=1)
            pairs = [
                (sid, int(scene.ids[i]), int(scene.ids[dest[b]]), float(scores[k, b]))
                for k, (i, b) in enumerate(zip(group, best.tolist(), strict=True))
            ]
        else:
            lead = (
                f"{a_name} holds {photos} of someone no folder holds, beside {len(own)} of its own"
            )
            pairs = [(sid, int(scene.ids[i]), int(scene.ids[i]), 1.0) for i in group]
        text = (
            f"{lead}; against its own: {own_text}; groups' faces agree at "
            f"{found.own:.2f} (confidence {found.confidence:.2f})"
        )
        row = self.row(found, scene, sid, (fa, fb), (a_name, b_name), text)
        return Described(row, pairs)


KIND = Mixed()
