"""What is on disk: image files under root/<class>/..., and how they differ from the store."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from store.catalog import FileRow

log = logging.getLogger("facelint.inventory")

HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class DiskFile:
    path: str  # relative to root, POSIX separators, exactly as the file system names it
    klass: str
    size: int
    mtime_ns: int


@dataclass
class Diff:
    """How the disk differs from the store, with content hashes for what changed."""

    new: list[tuple[DiskFile, str]] = field(default_factory=list)  # (file, hash)
    moved: list[tuple[int, DiskFile]] = field(default_factory=list)  # (stored id, new file)
    changed: list[tuple[int, DiskFile, str]] = field(default_factory=list)  # new content
    touched: list[tuple[int, DiskFile]] = field(default_factory=list)  # same content
    removed: list[int] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    unchanged: int = 0

    def is_empty(self) -> bool:
        return not (self.new or self.moved or self.changed or self.touched or self.removed)


def is_image_name(name: str, extensions: Iterable[str]) -> bool:
    return os.path.splitext(name)[1].lower() in tuple(extensions)


def class_of(relpath: str) -> str | None:
    """The class is the first folder level; files directly in the root have none."""
    parts = relpath.split("/")
    return parts[0] if len(parts) >= 2 else None


def is_tracked(relpath: str, extensions: Iterable[str], quarantine: str) -> bool:
    """Whether a root-relative path is an image file facelint tracks."""
    parts = relpath.split("/")
    if len(parts) < 2 or parts[0] == quarantine:
        return False
    if any(p.startswith(".") for p in parts):
        return False
    return is_image_name(parts[-1], extensions)


def walk(
    root: Path,
    extensions: Iterable[str],
    quarantine: str,
    skipped: list[tuple[str, str]],
    start: str = "",
) -> Iterator[DiskFile]:
    """Every tracked image under root (or under its sub-folder `start`).

    Symlinks are not followed: they could loop, or lead out of the root.
    """
    exts = tuple(extensions)
    stack = [(start, root / start if start else root)]
    while stack:
        rel_dir, directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as exc:
            skipped.append((rel_dir or ".", f"cannot list folder: {exc.strerror or exc}"))
            continue
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_symlink():
                    continue
                if entry.is_dir():
                    if not (rel_dir == "" and entry.name == quarantine):
                        stack.append((rel, Path(entry.path)))
                    continue
                if not entry.is_file() or not is_image_name(entry.name, exts):
                    continue
                klass = class_of(rel)
                if klass is None:
                    skipped.append((rel, "image directly in the root: not in a class folder"))
                    continue
                try:
                    rel.encode("utf-8")
                except UnicodeEncodeError:
                    skipped.append((rel, "file name is not valid UTF-8"))
                    continue
                st = entry.stat()
            except OSError as exc:
                skipped.append((rel, f"cannot stat: {exc.strerror or exc}"))
                continue
            yield DiskFile(rel, klass, st.st_size, st.st_mtime_ns)


def stat_file(root: Path, relpath: str) -> DiskFile | None:
    """One file's DiskFile, or None when it is gone or not a regular file."""
    klass = class_of(relpath)
    if klass is None:
        return None
    try:
        st = os.stat(root / relpath, follow_symlinks=False)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return DiskFile(relpath, klass, st.st_size, st.st_mtime_ns)


def content_hash(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with path.open("rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def diff(
    root: Path,
    disk: Iterable[DiskFile],
    stored: dict[str, FileRow],
    skipped: list[tuple[str, str]] | None = None,
) -> Diff:
    """Compare disk with the store; hash only files whose (size, mtime) changed.

    A stored file whose path is not in `disk` is gone. A full scan passes the whole tree
    and the whole store; the daemon passes the paths its events named, on both sides.
    """
    out = Diff(skipped=skipped if skipped is not None else [])
    seen: set[str] = set()
    fresh: list[tuple[DiskFile, str]] = []
    for f in disk:
        seen.add(f.path)
        old = stored.get(f.path)
        if old is not None and old.size == f.size and old.mtime_ns == f.mtime_ns:
            out.unchanged += 1
            continue
        try:
            digest = content_hash(root / f.path)
        except OSError as exc:
            # Unreadable for now (permissions, a file mid-replace): a stored row stays as
            # it was, since the path is in `seen`; the next pass tries again.
            out.skipped.append((f.path, f"cannot read: {exc.strerror or exc}"))
            continue
        if old is None:
            fresh.append((f, digest))
        elif old.hash == digest:
            out.touched.append((old.id, f))
        else:
            out.changed.append((old.id, f, digest))
    gone = [s for p, s in stored.items() if p not in seen]
    # A new path whose content is that of a vanished file is a move: keep its identity so
    # its review history and pairs follow it, and nothing is re-encoded.
    by_hash: dict[str, list[FileRow]] = {}
    for s in gone:
        if s.hash:
            by_hash.setdefault(s.hash, []).append(s)
    moved_ids: set[int] = set()
    for f, digest in fresh:
        candidates = by_hash.get(digest)
        if candidates:
            src = candidates.pop()
            moved_ids.add(src.id)
            out.moved.append((src.id, f))
        else:
            out.new.append((f, digest))
    out.removed = [s.id for s in gone if s.id not in moved_ids]
    return out
