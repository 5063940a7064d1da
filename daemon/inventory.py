"""What is on disk: image files under root/<class>/..., and how they differ from the store."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from daemon.common.hashing import HARD_LINK, content_hash, special_file
from store.catalog import FileRow

log = logging.getLogger("facelint.inventory")


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


NOT_UTF8 = "file name is not valid UTF-8"
SYMLINK = "symbolic link: not followed"
IN_ROOT = "image directly in the root: not in a class folder"
# Another name of the same file may lie anywhere on the file system, and finding every
# name of a file takes a walk of the whole disk: a file with several names is not read.


class EmptyRoot(RuntimeError):
    """A full scan found no image while the store holds some: most likely a wrong or
    unmounted root, so nothing is removed unless the user allows it (--allow-empty)."""

    def __init__(self, root: Path, stored: int):
        self.root, self.stored = root, stored
        super().__init__(
            f"{printable(str(root))} holds no image but the store holds {stored}: "
            "removing nothing (a wrong or unmounted folder?); pass --allow-empty if the "
            "data set really is empty now"
        )


def printable(path: str) -> str:
    """A path as facelint prints it anywhere (output, JSON, logs, status): valid UTF-8.

    Python hands undecodable bytes of a name over as surrogate escapes (os.fsdecode);
    they become Python's backslash escape of the byte (`bad\\xffname.jpg`), one rule
    everywhere. Valid names are unchanged.
    """
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def is_utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_tracked(relpath: str, extensions: Iterable[str], quarantine: str) -> bool:
    """Whether a root-relative path names an image facelint can track, by its name alone
    (check_path adds what the file system says)."""
    return _name_rule(relpath, relpath.split("/"), tuple(extensions), quarantine) == (True, None)


def _visible(parts: list[str], quarantine: str) -> bool:
    """Not hidden, not in quarantine, a plain path below the root."""
    return not (
        any(p in ("", ".", "..") or p.startswith(".") for p in parts) or parts[0] == quarantine
    )


def _name_rule(
    relpath: str, parts: list[str], exts: tuple[str, ...], quarantine: str
) -> tuple[bool, str | None]:
    """(tracked by name, why an image-like name is refused); (False, None): not ours."""
    if not _visible(parts, quarantine) or not is_image_name(parts[-1], exts):
        return False, None
    if len(parts) < 2:
        return False, IN_ROOT
    if not is_utf8(relpath):
        # The store holds UTF-8 only: such a name could never be stored or printed as is.
        return False, NOT_UTF8
    return True, None


def check_path(
    root: Path,
    relpath: str,
    extensions: Iterable[str],
    quarantine: str,
    real_dirs: set[str] | None = None,
) -> tuple[DiskFile | None, str | None]:
    """The one rule for "is this path tracked", for the full scan and the daemon alike.

    Returns (the file, None) when tracked; (None, why) for an image-like path refused for a
    reason worth telling; (None, None) when the path is not ours or is gone. Tracked: an
    image name under a class folder, no hidden part, not in quarantine, valid UTF-8, no
    symbolic link in any part below the root (so nothing resolves outside it, and a linked
    folder never doubles a class), and a regular file. `real_dirs`: root-relative folders
    the caller has just seen are not links (walk), to save their lstat.
    """
    parts = relpath.split("/")
    exts = extensions if isinstance(extensions, tuple) else tuple(extensions)
    ok, why = _name_rule(relpath, parts, exts, quarantine)
    base = os.fspath(root)
    if not ok:
        # A linked folder (`ln -s /elsewhere Victim`): say why nothing under it counts.
        link = os.path.join(base, relpath)
        visible = why is None and _visible(parts, quarantine)
        if visible and os.path.islink(link) and os.path.isdir(link):
            return None, f"folder is a {SYMLINK}"
        return None, why
    # Plain strings, not Path objects: walk calls this for every file of the tree.
    for i in range(1, len(parts)):
        prefix = "/".join(parts[:i])
        if real_dirs is not None and prefix in real_dirs:
            continue
        try:
            st = os.lstat(os.path.join(base, prefix))
        except OSError:
            return None, None  # gone (or not a folder): the store forgets it
        if stat.S_ISLNK(st.st_mode):
            return None, f"inside {printable(prefix)}, a {SYMLINK}"
    try:
        st = os.lstat(os.path.join(base, relpath))
    except OSError:
        return None, None
    if stat.S_ISLNK(st.st_mode):
        return None, SYMLINK
    if not stat.S_ISREG(st.st_mode):
        return None, special_file(st.st_mode)
    if st.st_nlink > 1:
        return None, HARD_LINK
    return DiskFile(relpath, parts[0], st.st_size, st.st_mtime_ns), None


def walk(
    root: Path,
    extensions: Iterable[str],
    quarantine: str,
    skipped: list[tuple[str, str]],
    start: str = "",
) -> Iterator[DiskFile]:
    """Every tracked image under root (or under its sub-folder `start`), by check_path.

    Symlinks are not followed: they could loop, or lead out of the root.
    """
    exts = tuple(extensions)
    if start:
        # A folder named by an event may itself be a link, or lie under one.
        for i in range(1, len(start.split("/")) + 1):
            prefix = "/".join(start.split("/")[:i])
            if os.path.islink(root / prefix):
                skipped.append((printable(prefix), f"folder is a {SYMLINK}"))
                return
    real_dirs: set[str] = set()
    stack = [(start, root / start if start else root)]
    while stack:
        rel_dir, directory = stack.pop()
        real_dirs.add(rel_dir)
        try:
            entries = list(os.scandir(directory))
        except OSError as exc:
            why = f"cannot list folder: {exc.strerror or exc}"
            skipped.append((printable(rel_dir or "."), why))
            continue
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    if not (rel_dir == "" and entry.name == quarantine):
                        stack.append((rel, Path(entry.path)))
                    continue
                if not (is_image_name(entry.name, exts) or entry.is_symlink()):
                    continue
            except OSError as exc:
                skipped.append((printable(rel), f"cannot stat: {exc.strerror or exc}"))
                continue
            f, why = check_path(root, rel, exts, quarantine, real_dirs)
            if why is not None:
                skipped.append((printable(rel), why))
            elif f is not None:
                yield f


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
