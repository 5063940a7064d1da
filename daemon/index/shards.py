"""The folder index's lists in Ray actors, for an index that does not fit one machine.

With `index_shards` above 1 and a Ray cluster (`ray_address`, or RAY_ADDRESS), each shard
is one actor holding a `folders.Lists`: the faces (and strays) of the folders whose list
number falls to it (list number mod shards). The daemon keeps the routing (folder
centroids, who is loose, which lists each face probes) and the vectors it rescores
with; a range search sends each actor the query faces that probe its lists and takes
the union, so the candidates are the single index's. The actors ask for no CPU (they
work only while the daemon waits on them, and must not take the cores an encode job
needs) and are pinned to the nodes in turn.
"""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import Any

from daemon.encoders.ray_pool import ClusterUnavailable, connect, ray_installed
from daemon.index.folders import Lists


class ShardLists(Lists):
    """The lists as a Ray actor holds them; says where it runs."""

    def node(self) -> str:
        import ray

        return str(ray.get_runtime_context().get_node_id())


class Remote:
    """A `folders.Holder` whose lists live in a Ray actor."""

    def __init__(self, actor: Any):
        self.actor = actor

    def call(self, name: str, *args: Any) -> Any:
        return getattr(self.actor, name).remote(*args)

    def wait(self, handle: Any) -> Any:
        import ray

        return ray.get(handle)


class Shards:
    """`count` actors on the cluster at `address`; `holders(d, capacity)` hands them out
    emptied for a new index. close() ends them (and the connection, where this opened
    it)."""

    def __init__(self, address: str, count: int, origin: str = "setting 'ray_address'"):
        if count < 2:
            raise ValueError("shards are for two or more actors (index_shards = 1: no Ray)")
        if not address:
            raise ClusterUnavailable(
                f"index_shards = {count} puts the index in Ray actors, but no Ray cluster "
                "is named: set ray_address (or RAY_ADDRESS), or index_shards = 1"
            )
        if not ray_installed():
            raise ClusterUnavailable(
                f"index_shards = {count} needs Ray: pip install 'facelint[cluster]', or "
                "set index_shards = 1"
            )
        self.address, self.count, self.origin = address, count, origin
        self._actors: list[Any] = []
        self._connected_here = False

    def holders(self, d: int, capacity: int) -> list[Remote]:
        if not self._actors:
            import ray
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            self._connected_here = connect(self.address, self.origin) or self._connected_here
            # Pinned to the nodes in turn (SPREAD, and a soft affinity, are hints: two
            # actors often shared a node). A node that leaves takes its shard with it:
            # the keeper then builds the index again in new actors (keeper.py).
            nodes = sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive"))
            actor = ray.remote(num_cpus=0)(ShardLists)
            self._actors = [
                actor.options(
                    scheduling_strategy=NodeAffinitySchedulingStrategy(
                        nodes[i % len(nodes)], soft=False
                    )
                ).remote(d, capacity)
                for i in range(self.count)
            ]
        holders = [Remote(a) for a in self._actors]
        refs = [h.call("reset", d, capacity) for h in holders]
        for h, ref in zip(holders, refs, strict=True):
            h.wait(ref)
        return holders

    def nodes(self) -> list[str]:
        """The node each actor runs on."""
        import ray

        return list(ray.get([a.node.remote() for a in self._actors]))

    def close(self) -> None:
        if self._actors:
            import ray

            for a in self._actors:
                with contextlib.suppress(Exception):  # already gone with its node
                    ray.kill(a)
            self._actors = []
        if self._connected_here:
            import ray

            ray.shutdown()
            self._connected_here = False

    def __enter__(self) -> Shards:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
