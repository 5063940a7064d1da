"""The encode step: content no encoding of the configured model exists for, through the
encoder pool, written in chunks (each its own short transaction) so that a kill loses at
most one chunk and readers never wait on an encode."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from daemon.encoders.base import Encoding
from daemon.encoders.pool import EncoderPool
from daemon.runstats import ProgressEvent, RunStats
from store import embeddings, meta
from store.clock import utcnow
from store.db import Store
from store.vocab import FAILED, Status

# Encodings written per transaction: a chunk a minute at worst on a slow machine, so a
# crash re-encodes little and the dashboard sees progress.
ENCODE_CHUNK = 64
ENCODE_CHUNK_SECONDS = 20.0


def encode(
    root: Path,
    store: Store,
    pool: EncoderPool,
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

    def flush() -> int:
        if not batch:
            return 0
        with store.writing() as con:
            t0 = time.monotonic()
            embeddings.write_encodings(con, pool.model_id, batch, utcnow())
            meta.bump_counter(con, "generation", 1)
        if on_write is not None:
            on_write(time.monotonic() - t0)
        n = len(batch)
        batch.clear()
        return n

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
