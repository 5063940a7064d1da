"""Search by photo: the stored faces nearest to the face in one photo.

The photo is encoded with the store's own model (the same encoder options the daemon
used), then ranked against every stored face by cosine; the score shown is the store's
calibrated score, the one pairs are filtered on.

Two ways to run it: `search()` here, in the caller's process (it loads the model: seconds),
or the running daemon's `SearchServer`, which keeps the model loaded and answers over a
local socket (daemon/common/searchclient.py holds the protocol and the client).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import AuthenticationError
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from daemon.common import searchclient
from daemon.config import Settings
from daemon.encoders import registry
from daemon.encoders.base import Encoder, Encoding, encode_file
from store import meta
from store.db import Store
from store.queries.search import StoredFaces, face_info, stored_faces
from store.vectors import normalise
from store.vocab import USABLE

log = logging.getLogger("facelint.search")


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


OnWait = Callable[[float, str], None]


def _store_model(settings: Settings, on_wait: OnWait | None, timeout: float) -> str:
    with Store(settings.db, lock_timeout=timeout, on_wait=on_wait).reading() as con:
        return _checked_model(settings, meta.get_meta(con, "model"))


def _checked_model(settings: Settings, model: str | None) -> str:
    if model is None:
        raise SearchError(f"the store {settings.db} holds no encoded face yet: scan first")
    wanted = registry.model_id(settings)
    if wanted != model:
        raise SearchError(
            f"the store was encoded with {model}, these settings give {wanted}: "
            "search with the settings the daemon uses (facelint.toml)"
        )
    return model


def _rank_in_store(
    settings: Settings,
    enc: Encoding,
    photo: str,
    n: int,
    model: str | None,
    timings: dict[str, float],
    on_wait: OnWait | None,
    timeout: float,
    faces_of: Callable[[duckdb.DuckDBPyConnection], StoredFaces] = stored_faces,
) -> SearchResult:
    """Rank the stored faces against the encoded photo's; `model` None: read and check
    the store's model in the same open. `faces_of(con)`: the stored faces (the daemon's
    server keeps them between searches)."""
    if enc.vector is None or enc.status not in USABLE:
        raise SearchError(f"no usable face in {photo}: {enc.message or enc.status}")
    # The store side: one short read-only open for the vectors, the ranking, the names.
    started = time.perf_counter()
    with Store(settings.db, lock_timeout=timeout, on_wait=on_wait).reading() as con:
        if model is None:
            model = _checked_model(settings, meta.get_meta(con, "model"))
        faces = faces_of(con)
        timings["read"] = time.perf_counter() - started
        ranked = rank(faces, enc.vector, n)
        timings["rank"] = time.perf_counter() - started - timings["read"]
        info = face_info(con, [r[0] for r in ranked], [r[3] for r in ranked])
    timings["store"] = time.perf_counter() - started
    hits = [
        Hit(k + 1, info[i].klass, info[i].path, score, cosine, info[i].box)
        for k, (i, score, cosine, _) in enumerate(r for r in ranked if r[0] in info)
    ]
    return SearchResult(photo, enc.detected, enc.box, model, hits, timings)


def search(
    settings: Settings, photo: Path, n: int = 10, on_wait: OnWait | None = None
) -> SearchResult:
    """Encode the photo's face with the store's model, in this process, then rank every
    stored face. The store is waited for `read_wait` at most (`on_wait` told)."""
    timings: dict[str, float] = {}
    if not Path(photo).is_file():
        raise SearchError(f"{photo} is not a file")
    started = time.perf_counter()
    model = _store_model(settings, on_wait, settings.read_wait)
    timings["open"] = time.perf_counter() - started
    started = time.perf_counter()
    encoder = registry.build(settings)
    timings["load_model"] = time.perf_counter() - started
    started = time.perf_counter()
    enc = encode_file(encoder, Path(photo), settings.max_pixels)
    timings["encode"] = time.perf_counter() - started
    return _rank_in_store(settings, enc, str(photo), n, model, timings, on_wait, settings.read_wait)


# -- the daemon's side ---------------------------------------------------------------------

# Searches the daemon answers at once; a client beyond them is told to try again.
MAX_CLIENTS = 4
# The server keeps the stored faces it read; they are read again when the store's
# generation moved and they are older than this. Reading every face is most of a search
# (0.2 s at 57,637 faces on a quiet machine, several times that while the daemon encodes
# beside it), and while the daemon encodes the generation moves at every chunk: a search
# may then miss faces encoded in the last few seconds, never one that is gone (the names
# are looked up in the store at each search, and a face no longer there is dropped).
FACES_STALE_SECONDS = 15.0
# Unix socket paths are limited to 108 bytes (sun_path) on Linux.
MAX_SOCKET_PATH = 107


class RequestError(ValueError):
    """A request the server will not run; its message goes back to the client."""


class SearchServer:
    """The daemon's search, over a Unix socket beside the status file.

    The encoder is loaded once, in this process, by a background thread at start (a
    search then costs one encode and one read of the store's vectors, not a model load);
    it is this process's own, not the encoder pool's: the pool's workers belong to the
    daemon's one worker thread. Each client gets a thread of its own, authenticates with
    the key file's secret (new at each start, owner-only), sends one JSON request and the
    photo's bytes, and gets one JSON answer. A client that fails the handshake, sends
    something else or stalls is answered (when it can be) and dropped; the daemon goes on.
    """

    def __init__(self, settings: Settings, encoder_factory: Callable[[], Encoder] | None = None):
        self.s = settings
        self.socket_path = settings.search_socket_path()
        self.key_path = settings.search_key_path()
        self._factory = encoder_factory or (lambda: registry.build(settings, threads=1))
        self._encoder: Encoder | None = None
        self._encoder_error: str | None = None
        self._loaded = threading.Event()
        self._loading = False
        self._load_lock = threading.Lock()
        self._encode_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self._sock: socket.socket | None = None
        self._identity: tuple[int, int] | None = None
        self._key = b""
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # (generation, (store id, model), read at (monotonic), the faces): see
        # FACES_STALE_SECONDS.
        self._faces: tuple[int, tuple[str | None, str | None], float, StoredFaces] | None = None
        self._faces_lock = threading.Lock()
        # What happened, for the status and the tests.
        self.answered = 0
        self.refused = 0
        self.note = ""

    # -- life ------------------------------------------------------------------------------

    def start(self) -> bool:
        """Listen (False, with `note` saying why, when it cannot: the CLI then searches
        by itself). The encoder loads at the first search, or before with `preload()`."""
        path = self.socket_path
        if len(os.fsencode(str(path.absolute()))) > MAX_SOCKET_PATH:
            self.note = f"search socket not served: its path {path} is over 107 bytes"
            log.warning("%s", self.note)
            return False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._key = secrets.token_bytes(32)
            _write_private(self.key_path, self._key)
            # One daemon per store (DaemonLock): a socket file here is a dead one's.
            path.unlink(missing_ok=True)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(str(path))
            os.chmod(path, 0o600)
            sock.listen(16)
        except OSError as exc:
            self.note = f"search socket not served: {exc}"
            log.warning("%s", self.note)
            return False
        st = os.stat(path)
        self._identity = (st.st_dev, st.st_ino)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="search-socket", daemon=True)
        self._thread.start()
        log.info("answering searches on %s", path)
        return True

    def stop(self) -> None:
        self._stopping.set()
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        # Only our own socket file: never one another daemon bound since.
        try:
            st = os.stat(self.socket_path)
            if (st.st_dev, st.st_ino) == self._identity:
                self.socket_path.unlink()
        except OSError:
            pass

    def preload(self) -> None:
        """Load the encoder now, in a background thread: the first search then finds it
        warm (the running daemon does this; in-process tests load at first use)."""
        self._start_loading()

    def _start_loading(self) -> None:
        with self._load_lock:
            if self._loading:
                return
            self._loading = True
        threading.Thread(target=self._load, name="search-encoder", daemon=True).start()

    def _load(self) -> None:
        try:
            self._encoder = self._factory()
        except Exception as exc:  # said to every client, and in the log
            self._encoder_error = f"the daemon cannot load its face model: {exc}"
            log.error("%s", self._encoder_error)
        finally:
            self._loaded.set()
        try:  # warm the faces too; a store not there yet is read at the first search
            with Store(self.s.db, lock_timeout=self.s.read_wait).reading() as con:
                self._stored_faces(con)
        except Exception as exc:
            log.debug("search: stored faces not read ahead: %s", exc)

    # -- serving ---------------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stopping.is_set():
            sock = self._sock
            if sock is None:
                return
            try:
                client, _ = sock.accept()
            except OSError:
                if self._stopping.is_set():
                    return
                time.sleep(0.1)
                continue
            if not self._slots.acquire(blocking=False):
                threading.Thread(target=self._too_busy, args=(client,), daemon=True).start()
                continue
            threading.Thread(target=self._client, args=(client,), daemon=True).start()

    def _handshake(self, client: socket.socket) -> Connection | None:
        searchclient.set_timeouts(client, searchclient.IO_TIMEOUT_SECONDS)
        conn = Connection(client.detach())
        try:
            # multiprocessing.connection.Listener's order: challenge, then answer.
            deliver_challenge(conn, self._key)
            answer_challenge(conn, self._key)
        except (AuthenticationError, OSError, EOFError, AssertionError) as exc:
            self.refused += 1
            log.warning("search socket: refused a client: %s", exc or type(exc).__name__)
            conn.close()
            return None
        return conn

    def _too_busy(self, client: socket.socket) -> None:
        conn = self._handshake(client)
        if conn is not None:
            _reply(
                conn,
                {
                    "ok": False,
                    "error": f"the daemon is answering {MAX_CLIENTS} searches already: try again",
                },
            )
            conn.close()

    def _client(self, client: socket.socket) -> None:
        try:
            conn = self._handshake(client)
            if conn is None:
                return
            try:
                answer = self._answer(conn)
            except RequestError as exc:
                self.refused += 1
                log.warning("search socket: refused a request: %s", exc)
                answer = {"ok": False, "error": f"bad request: {exc}"}
            except (OSError, EOFError) as exc:
                log.warning("search socket: a client went away: %s", exc)
                conn.close()
                return
            except SearchError as exc:
                answer = {"ok": False, "error": str(exc)}
            except Exception as exc:  # the daemon goes on; the client hears why
                log.exception("search failed")
                answer = {"ok": False, "error": f"the search failed: {type(exc).__name__}: {exc}"}
            _reply(conn, answer)
            conn.close()
        finally:
            self._slots.release()

    def _answer(self, conn: Connection) -> dict[str, Any]:
        try:
            header = json.loads(conn.recv_bytes(searchclient.MAX_HEADER_BYTES))
        except ValueError as exc:
            raise RequestError(f"the request is not JSON ({exc})") from exc
        except OSError as exc:
            if "bad message length" in str(exc):
                raise RequestError("the request is too long") from exc
            raise
        if not isinstance(header, dict) or header.get("op") != "search":
            raise RequestError('expected {"op": "search", "n": N, "name": NAME, "size": BYTES}')
        n, size, name = header.get("n"), header.get("size"), header.get("name", "photo")
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 1000:
            raise RequestError("n must be a whole number from 1 to 1000")
        if not isinstance(size, int) or not 0 < size <= searchclient.MAX_PHOTO_BYTES:
            raise RequestError(f"size must be 1 to {searchclient.MAX_PHOTO_BYTES} bytes")
        if not isinstance(name, str):
            raise RequestError("name must be text")
        try:
            data = conn.recv_bytes(searchclient.MAX_PHOTO_BYTES)
        except OSError as exc:
            if "bad message length" in str(exc):
                raise RequestError("the photo is too large") from exc
            raise
        if len(data) != size:
            raise RequestError(f"the photo has {len(data)} bytes, the request said {size}")
        result = self.search_bytes(data, name, n)
        self.answered += 1
        return {"ok": True, "result": result}

    def _stored_faces(self, con: duckdb.DuckDBPyConnection) -> StoredFaces:
        """The stored faces, from memory while they are current enough."""
        # The store's id as well: a store rebuilt after it was lost restarts generations.
        key = (meta.get_meta(con, "store_id"), meta.get_meta(con, "model"))
        generation, now = meta.generation(con), time.monotonic()
        with self._faces_lock:
            kept = self._faces
            fresh = kept is not None and (
                kept[0] == generation or now - kept[2] < FACES_STALE_SECONDS
            )
            if kept is not None and kept[1] == key and fresh:
                return kept[3]
            faces = stored_faces(con)
            self._faces = (generation, key, now, faces)
            return faces

    def search_bytes(self, data: bytes, name: str, n: int) -> dict[str, Any]:
        """One search, here: encode with the loaded model, rank in the store."""
        timings: dict[str, float] = {}
        started = time.perf_counter()
        self._start_loading()
        if not self._loaded.wait(120):
            raise SearchError("the daemon is still loading its face model: try again")
        if self._encoder is None:
            raise SearchError(self._encoder_error or "the daemon has no face model")
        timings["model_wait"] = time.perf_counter() - started
        suffix = Path(name).suffix.lower()
        if suffix not in self.s.extensions:
            suffix = ".jpg"
        with tempfile.TemporaryDirectory(prefix="facelint-search-") as tmp:
            photo = Path(tmp) / f"photo{suffix}"
            photo.write_bytes(data)
            t0 = time.perf_counter()
            with self._encode_lock:
                enc = encode_file(self._encoder, photo, self.s.max_pixels)
            timings["encode"] = time.perf_counter() - t0
        # One open of the store, after the encode, waited for like a CLI read: briefly,
        # and the daemon's own writes it may meet are short.
        found = _rank_in_store(
            self.s, enc, name, n, None, timings, None, self.s.read_wait, self._stored_faces
        )
        result = found.as_dict()
        result["searched_by"] = f"the facelint daemon (pid {os.getpid()})"
        return result


def _reply(conn: Connection, answer: dict[str, Any]) -> None:
    try:
        conn.send_bytes(json.dumps(answer, ensure_ascii=False, default=str).encode())
    except OSError as exc:
        log.warning("search socket: could not answer a client: %s", exc)


def _write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read, replacing any old one atomically."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
