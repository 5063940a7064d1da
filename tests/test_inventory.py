"""What counts as an image of which class, and how the disk differs from the store."""

from __future__ import annotations

import os
import shutil
import stat
import threading

import pytest

from daemon import inventory
from daemon.common import hashing
from daemon.config import Settings
from store.catalog import FileRow
from tests.conftest import DEV_FACES


def test_walk_classes_extensions_and_what_is_left_out(tmp_path):
    root = tmp_path / "data"
    (root / "山田 太郎" / "2019" / "deep").mkdir(parents=True)
    (root / "_quarantine" / "X").mkdir(parents=True)
    (root / ".cache").mkdir()
    src = DEV_FACES / "Amy" / "amy1.png"
    shutil.copy2(src, root / "山田 太郎" / "a,b.c.PNG")
    shutil.copy2(src, root / "山田 太郎" / "2019" / "deep" / "x.JpEg")
    shutil.copy2(src, root / "山田 太郎" / "notes.txt")
    shutil.copy2(src, root / "山田 太郎" / ".hidden.png")
    shutil.copy2(src, root / "_quarantine" / "X" / "q.png")
    shutil.copy2(src, root / ".cache" / "c.png")
    shutil.copy2(src, root / "loose.png")
    os.symlink(src, root / "山田 太郎" / "link.png")
    skipped: list[tuple[str, str]] = []
    s = Settings()
    found = {f.path: f.klass for f in inventory.walk(root, s.extensions, s.quarantine, skipped)}
    assert found == {
        "山田 太郎/a,b.c.PNG": "山田 太郎",
        "山田 太郎/2019/deep/x.JpEg": "山田 太郎",
    }
    assert sorted(skipped) == [
        ("loose.png", "image directly in the root: not in a class folder"),
        ("山田 太郎/link.png", "symbolic link: not followed"),
    ]


def test_diff_hashes_only_changed_files_and_finds_moves(tmp_path):
    root = tmp_path / "data"
    (root / "A").mkdir(parents=True)
    (root / "B").mkdir()
    for name in ("amy1.png", "amy2.png", "amy3.png"):
        shutil.copy2(DEV_FACES / "Amy" / name, root / "A" / name)
    s = Settings()
    disk = list(inventory.walk(root, s.extensions, s.quarantine, []))
    first = inventory.diff(root, disk, {})
    assert len(first.new) == 3
    stored = {
        f.path: FileRow(i, f.path, f.klass, f.size, f.mtime_ns, h)
        for i, (f, h) in enumerate(first.new)
    }
    shutil.move(root / "A" / "amy1.png", root / "B" / "amy1.png")  # a relabel
    os.utime(root / "A" / "amy2.png", ns=(1, 1))  # touched, same bytes
    (root / "A" / "amy3.png").write_bytes(b"new content")  # changed
    disk = list(inventory.walk(root, s.extensions, s.quarantine, []))
    d = inventory.diff(root, disk, stored)
    assert [(i, f.path) for i, f in d.moved] == [(stored["A/amy1.png"].id, "B/amy1.png")]
    assert [f.path for _, f in d.touched] == ["A/amy2.png"]
    assert [f.path for _, f, _ in d.changed] == ["A/amy3.png"]
    assert d.new == [] and d.removed == []


def test_special_files_and_hard_links_are_skipped_with_their_reason(tmp_path):
    root = tmp_path / "data"
    (root / "A").mkdir(parents=True)
    outside = tmp_path / "secret.png"
    shutil.copy2(DEV_FACES / "Amy" / "amy1.png", outside)
    shutil.copy2(DEV_FACES / "Amy" / "amy2.png", root / "A" / "plain.png")
    os.mkfifo(root / "A" / "pipe.jpg")
    os.link(outside, root / "A" / "linked.png")
    expected = [
        ("A/linked.png", hashing.HARD_LINK),
        ("A/pipe.jpg", hashing.FIFO),
    ]
    try:
        os.mknod(root / "A" / "null.png", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        expected.insert(1, ("A/null.png", hashing.DEVICE))
    except PermissionError:
        pass  # not root: no device node to plant
    s = Settings()
    skipped: list[tuple[str, str]] = []
    found = [f.path for f in inventory.walk(root, s.extensions, s.quarantine, skipped)]
    assert found == ["A/plain.png"]
    assert sorted(skipped) == expected
    assert hashing.HARD_LINK.startswith("hard link: may name a file outside the root")
    # The daemon's one path at a time says the same.
    for rel, why in expected:
        assert inventory.check_path(root, rel, s.extensions, s.quarantine) == (None, why)


def test_hashing_never_blocks_on_a_fifo_or_follows_a_link(tmp_path):
    fifo = tmp_path / "swapped.png"
    os.mkfifo(fifo)  # put in a file's place after check_path looked: must not block
    result: list[BaseException | str] = []

    def hash_it() -> None:
        try:
            result.append(hashing.content_hash(fifo))
        except OSError as exc:
            result.append(exc)

    worker = threading.Thread(target=hash_it, daemon=True)
    worker.start()
    worker.join(5)
    assert not worker.is_alive(), "content_hash blocked on a FIFO"
    assert isinstance(result[0], OSError) and "FIFO" in str(result[0])
    link = tmp_path / "link.png"
    link.symlink_to(DEV_FACES / "Amy" / "amy1.png")
    with pytest.raises(OSError):
        hashing.content_hash(link)
