"""The encode step: content no encoding of the configured model exists for, through the
encoder pool — the local processes, or a Ray cluster when one is named — written in
chunks (each its own short transaction) so that a kill loses at most one chunk and
readers never wait on an encode.

Each chunk is written only as far as the store still wants it: when the store's
`generation` is not the one this step last left it at (another process wrote between
the encode and the write), the chunk is checked again, in the writing transaction,
against what the store holds now (`write_batch`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from daemon.config import Settings
from daemon.encoders.base import Encoding
from daemon.runstats import ProgressEvent, RunStats
from store import embeddings, meta
from store.clock import utcnow
from store.db import Store
from store.vocab import FAILED, Status

log = logging.getLogger("facelint.encode")

# Encodings written per transaction: a chunk a minute at worst on a slow machine, so a
# crash re-encodes little and the dashboard sees progress.
ENCODE_CHUNK = 64
ENCODE_CHUNK_SECONDS = 20.0


class Pool(Protocol):
    """What the encode step needs of a pool: daemon/encoders/pool.py's local processes or
    daemon/encoders/ray_pool.py's cluster."""

    model_id: str

    def encode(
        self,
        items: Iterable[tuple[str, Path]],
        before_each: Callable[[], bool] | None = None,
    ) -> Iterator[tuple[str, Encoding]]: ...

    def close(self) -> None: ...


def make_pool(settings: Settings) -> Pool:
    """The Ray cluster's pool when `ray_address` (or RAY_ADDRESS) names one, else the
    local processes. Connects to nothing yet."""
    from daemon.encoders import ray_pool

    address = ray_pool.cluster_address(settings)
    if address:
        return ray_pool.RayEncoderPool(settings, address)
    from daemon.encoders.pool import EncoderPool

    return EncoderPool(settings)


@dataclass
class Written:
    """What one guarded write did."""

    written: int
    generation: int  # the store's generation after the write
    stale: bool  # the store was not at the generation the writer last saw
    dropped: list[str] = field(default_factory=list)  # hashes the store no longer wanted


def write_batch(
    con: Any, model: str, rows: list[embeddings.EncodingRow], seen: int | None
) -> Written:
    """Write encodings inside the caller's transaction. `seen` is the generation the
    writer last left the store at (None: never). When the store is still there, the
    rows go in as they are; otherwise the batch is stale and only the rows the store
    still wants are written (`embeddings.still_to_encode`): content no file holds any
    more, or that another writer encoded meanwhile, is dropped. Nothing is lost by that:
    what the store wants and did not get stays to be encoded by the next run."""
    now = meta.get_counter(con, "generation")
    stale = seen is None or now != seen
    dropped: list[str] = []
    if stale and rows:
        wanted = embeddings.still_to_encode(con, model, [r.hash for r in rows])
        dropped = [r.hash for r in rows if r.hash not in wanted]
        rows = [r for r in rows if r.hash in wanted]
    if not rows:
        return Written(0, now, stale, dropped)
    embeddings.write_encodings(con, model, rows, utcnow())
    meta.bump_counter(con, "generation", 1)
    return Written(len(rows), now + 1, stale, dropped)


def encode(
    root: Path,
    store: Store,
    pool: Pool,
    todo: list[tuple[str, str]],
    stats: RunStats,
    on_progress: Callable[[ProgressEvent], None],
    before_each: Callable[[], bool] | None = None,
    on_write: Callable[[float], None] | None = None,
) -> None:
    """Encode `todo` ((hash, path) pairs). `before_each` may pause (a hot CPU) or stop the
    encodes; `on_write(seconds)` hears how long each write held the store."""
    if not todo:
        return
    started = time.monotonic()
    total = len(todo)
    on_progress(ProgressEvent("encoding", 0, total))
    paths = dict(todo)
    batch: list[embeddings.EncodingRow] = []
    last_flush = time.monotonic()
    done = 0
    seen: int | None = None

    def flush() -> int:
        nonlocal seen
        if not batch:
            return 0
        with store.writing() as con:
            t0 = time.monotonic()
            result = write_batch(con, pool.model_id, batch, seen)
        if on_write is not None:
            on_write(time.monotonic() - t0)
        seen = result.generation
        if result.dropped:
            log.info(
                "the store changed while encoding: %d encoding(s) not written (content "
                "gone from the store, or encoded meanwhile)",
                len(result.dropped),
            )
        batch.clear()
        return result.written

    for digest, enc in pool.encode(((h, root / p) for h, p in todo), before_each=before_each):
        done += 1
        on_progress(ProgressEvent("encoding", done, total))
        if enc.status == Status.MISSING:
            stats.skipped.append((paths[digest], enc.message))
            continue
        batch.append(_row(digest, enc))
        if enc.status in FAILED:
            stats.failed += 1
            stats.failures.append((paths[digest], enc.status, enc.message))
        elif enc.status == Status.NO_FACE:
            stats.no_face += 1
            stats.failures.append((paths[digest], enc.status, enc.message))
        if len(batch) >= ENCODE_CHUNK or time.monotonic() - last_flush > ENCODE_CHUNK_SECONDS:
            stats.encoded += flush()
            last_flush = time.monotonic()
    stats.encoded += flush()
    stats.encode_seconds = round(time.monotonic() - started, 3)


def _row(digest: str, enc: Encoding) -> embeddings.EncodingRow:
    return embeddings.EncodingRow(
        digest,
        enc.status,
        enc.message,
        enc.detected,
        enc.whole_image,
        enc.width,
        enc.height,
        [embeddings.FaceRow(f.box, f.vector, f.det_score) for f in enc.faces],
    )
