"""Every file the dashboard reads or moves goes through here, and stays inside the root.

Paths come from the store (root-relative, POSIX separators) and the store is user-editable
(`facelint sql --write`), so none is trusted: absolute paths and `..` are refused outright,
and whatever is left must still resolve, symlinks followed, inside the resolved root.
Moves never overwrite: the rename itself refuses an existing destination. A move names the
content it is for (the hash the store recorded for the image reviewed) and checks it
before and after the rename: a file put in the reviewed one's place is never moved. Folder
names from the store must be one plain path component each: a class `.` tampered into the
store must not make a merge move the whole root.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from daemon.common.hashing import content_hash

# An image larger than this is not shown (the encoder's pixel limit guards decoding).
MAX_IMAGE_BYTES = 64 << 20
# Tries at a free name before a move gives up.
MAX_NAME_TRIES = 1000


class UnsafePath(ValueError):
    """A path that is not a plain root-relative path, or that resolves outside the root."""


class FileActionRefused(RuntimeError):
    """A move, removal or undo that was not done; the message says why, nothing changed."""


def resolved_root(root: Path) -> Path:
    try:
        base = Path(root).resolve(strict=True)
    except (FileNotFoundError, RuntimeError) as exc:
        raise UnsafePath(f"the data root {root} does not exist") from exc
    if not base.is_dir():
        raise UnsafePath(f"the data root {root} is not a folder")
    return base


def inside(root: Path, relpath: str) -> Path:
    """root/relpath with symlinks resolved, or UnsafePath when that leaves the root."""
    if not relpath or "\x00" in relpath:
        raise UnsafePath(f"refused path {relpath!r}: empty or not a file name")
    if PurePosixPath(relpath).is_absolute() or PureWindowsPath(relpath).drive:
        raise UnsafePath(f"refused path {relpath!r}: absolute; only paths inside the root")
    pure = PurePosixPath(relpath)
    if ".." in pure.parts or ".." in PureWindowsPath(relpath).parts:
        raise UnsafePath(f"refused path {relpath!r}: contains '..'")
    base = resolved_root(root)
    try:
        target = (base / pure).resolve()
    except (RuntimeError, OSError) as exc:
        # A symlink loop (`ln -s x.jpg x.jpg`): Python 3.11 raises RuntimeError, later
        # versions OSError. Either way no file can be read there: refuse it like a
        # path that leaves the root, rather than failing the whole page.
        raise UnsafePath(f"refused path {relpath!r}: {exc}") from exc
    if not target.is_relative_to(base):
        raise UnsafePath(
            f"refused path {relpath!r}: it resolves to {target}, outside the data root {base}"
        )
    return target


def folder_name(name: str | None, what: str = "folder") -> str:
    """`name` when it is one plain folder name (a class, the quarantine folder), else
    FileActionRefused: no separator, no NUL, not `.` or `..`, not hidden, not empty."""
    if (
        not name
        or name in (".", "..")
        or name.startswith(".")
        or any(c in name for c in ("/", "\\", "\x00"))
    ):
        raise FileActionRefused(
            f"{what} name {name!r} is not a single plain folder name (the store names it so, "
            "edited by hand?): no file moved"
        )
    return name


def _check_relpath(relpath: str) -> None:
    """A file path from the store: <folder>/<...>/<name>, every part a real name."""
    parts = relpath.split("/")
    if len(parts) < 2 or any(p in ("", ".", "..") for p in parts):
        raise FileActionRefused(
            f"{relpath!r} is not a path <folder>/<file> inside the root: no file moved"
        )
    folder_name(parts[0], f"the folder of {relpath!r}: folder")


def read_image_bytes(root: Path, relpath: str) -> bytes:
    """The bytes of an image inside the root: UnsafePath, FileNotFoundError or ValueError."""
    path = inside(root, relpath)
    if not path.is_file():
        raise FileNotFoundError(f"{relpath} is not on disk (moved or deleted since the scan?)")
    size = path.stat().st_size
    if size > MAX_IMAGE_BYTES:
        raise ValueError(f"{relpath} is {size:,} bytes: too large to show")
    return path.read_bytes()


def exists(root: Path, relpath: str) -> bool:
    try:
        return inside(root, relpath).is_file()
    except UnsafePath:
        return False


# -- moves -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Move:
    """A planned move between two root-relative paths, for a file of known content."""

    src: str
    dst: str
    # The content hashes (store/catalog's `hash`) the moved file may have: what was
    # reviewed. Any other content is refused before and after the rename.
    content: tuple[str, ...]


def content_differs(root: Path, relpath: str, content: tuple[str, ...]) -> str | None:
    """Why the file at relpath is not the content expected, or None when it is."""
    if not content:
        return f"{relpath}: no content hash is known for it (rescan first)"
    try:
        found = content_hash(inside(root, relpath))
    except OSError as exc:
        return f"{relpath} cannot be read to check its content: {exc.strerror or exc}"
    if found not in content:
        return (
            f"{relpath} is not the image reviewed: its content changed since the store "
            "saw it (replaced or edited?)"
        )
    return None


def check_content(root: Path, relpath: str, content: tuple[str, ...]) -> None:
    """FileActionRefused unless the file at relpath has one of the expected hashes."""
    why = content_differs(root, relpath, content)
    if why is not None:
        raise FileActionRefused(f"{why}: nothing moved")


def plain_source(root: Path, relpath: str) -> Path:
    """The file a move would take: a plain file inside the root, not a link; else
    FileActionRefused (or UnsafePath) saying why."""
    _check_relpath(relpath)
    path = inside(root, relpath)
    # The unresolved path is what gets renamed: it must be the file itself, not a link
    # (the scanner never follows links either, so a link here is not what was reviewed).
    raw = resolved_root(root) / PurePosixPath(relpath)
    if raw.is_symlink():
        raise FileActionRefused(f"{relpath} is a symbolic link: refused")
    if not path.is_file():
        raise FileActionRefused(
            f"{relpath} is not on disk any more (moved or deleted since the scan?)"
        )
    return path


def _free_name(folder: Path, name: str) -> str:
    """`name`, or `stem-2.ext`, `stem-3.ext`, ... : the first one not taken in `folder`."""
    if not (folder / name).exists():
        return name
    stem, ext = os.path.splitext(name)
    for n in range(2, MAX_NAME_TRIES):
        candidate = f"{stem}-{n}{ext}"
        if not (folder / candidate).exists():
            return candidate
    raise FileActionRefused(f"no free name for {name} in {folder}")


def _relative(root: Path, path: Path) -> str:
    return path.relative_to(resolved_root(root)).as_posix()


def plan_relabel(
    root: Path, relpath: str, target_class: str, content: tuple[str, ...], quarantine: str
) -> Move:
    """Move an image into the top of another class folder (that must exist)."""
    plain_source(root, relpath)
    folder_name(target_class, "class")
    if target_class == quarantine:
        raise FileActionRefused(f"{target_class!r} is the quarantine folder, not a class")
    folder = inside(root, target_class)
    if not folder.is_dir():
        raise FileActionRefused(f"class folder {target_class!r} is not a folder in the root")
    name = PurePosixPath(relpath).name
    return Move(relpath, _relative(root, folder / _free_name(folder, name)), content)


def plan_quarantine(root: Path, relpath: str, quarantine: str, content: tuple[str, ...]) -> Move:
    """Move an image to <quarantine>/<its class>/<its name>: out of the data set, kept."""
    plain_source(root, relpath)
    folder_name(quarantine, "quarantine folder")
    parts = relpath.split("/")
    folder = inside(root, f"{quarantine}/{parts[0]}")
    return Move(relpath, _relative(root, folder / _free_name(folder, parts[-1])), content)


def plan_undo(root: Path, moved_from: str, moved_to: str, content: tuple[str, ...]) -> Move:
    """Move a file back where an action took it from; refused if that place is taken."""
    _check_relpath(moved_from)
    back = inside(root, moved_from)
    if back.exists() or back.is_symlink():
        raise FileActionRefused(
            f"cannot undo: {moved_from} exists again, and an undo never overwrites"
        )
    plain_source(root, moved_to)
    return Move(moved_to, moved_from, content)


def execute(root: Path, move: Move) -> None:
    """Do a planned move: FileActionRefused if anything changed since it was planned,
    the file's content included (checked before the rename, and after it at its new
    place, so a file swapped in between goes back where it was)."""
    src = inside(root, move.src)
    dst = inside(root, move.dst)
    check_content(root, move.src, move.content)
    dst.parent.mkdir(parents=True, exist_ok=True)
    # mkdir may have followed a link made since planning: check again where it landed.
    if not dst.parent.resolve().is_relative_to(resolved_root(root)):
        raise UnsafePath(f"refused path {move.dst!r}: its folder now resolves outside the root")
    try:
        rename_no_replace(src, dst)
    except FileExistsError as exc:
        raise FileActionRefused(f"{move.dst} appeared meanwhile: not overwritten") from exc
    except FileNotFoundError as exc:
        raise FileActionRefused(f"{move.src} is not on disk any more") from exc
    except OSError as exc:
        raise FileActionRefused(f"cannot move {move.src} to {move.dst}: {exc}") from exc
    if content_differs(root, move.dst, move.content) is not None:
        rename_no_replace(dst, src)
        raise FileActionRefused(
            f"{move.src} was replaced while it was being moved (not the image reviewed): "
            "put back, nothing moved"
        )


_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def _renameat2(src: Path, dst: Path) -> bool:
    """Linux's atomic no-overwrite rename; False where the kernel or file system lacks it."""
    if sys.platform != "linux":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(src), None, str(dst))


def rename_no_replace(src: Path, dst: Path) -> None:
    """Rename src to dst, FileExistsError if dst exists, without a window in between.

    A plain rename would replace dst. renameat2(RENAME_NOREPLACE) keeps it one rename (one
    "moved" event for the daemon's watcher); link+unlink is the portable no-overwrite way.
    """
    if _renameat2(src, dst):
        return
    try:
        os.link(src, dst)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        # No hard links here (some network and FAT file systems): check, then rename.
        if dst.exists() or dst.is_symlink():
            raise FileExistsError(errno.EEXIST, "destination exists", str(dst)) from exc
        os.rename(src, dst)
        return
    os.unlink(src)
