"""What counts as an image of which class, and how the disk differs from the store."""

from __future__ import annotations

import os
import shutil

from daemon import inventory
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
