"""`facelint scan` end to end: real dlib, real DuckDB files, real dev faces."""

from __future__ import annotations

import csv
import io
import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from daemon.cli import main
from tests.conftest import DEV_FACES, release, store_held_by_another_process, store_rows

query = store_rows


def pairs_of(db: Path, path: str) -> list[tuple]:
    return query(
        db,
        "SELECT path_a, path_b, score FROM pairs WHERE path_a = ? OR path_b = ? ORDER BY score",
        [path, path],
    )


def test_copy_into_second_folder_is_a_pair_and_rescan_encodes_nothing(dev_copy, run_scan):
    root, db = dev_copy
    (root / "Penny_2").mkdir()
    # Same bytes: the content hash is known, so even the copy is not encoded again.
    shutil.copy2(root / "Penny" / "penny1.png", root / "Penny_2" / "penny1.png")
    stats = run_scan(root, db)
    assert stats.encoded == 0 and stats.reused == 1 and stats.new == 1
    found = pairs_of(db, "Penny_2/penny1.png")
    assert ("Penny/penny1.png", "Penny_2/penny1.png") in [(a, b) for a, b, _ in found]
    best = max(s for _, _, s in found)
    assert best > 0.9
    again = run_scan(root, db)
    assert (again.encoded, again.new, again.removed, again.moved) == (0, 0, 0, 0)
    assert again.pairs == stats.pairs


def test_no_same_class_pair_and_path_order(scanned_dev):
    _, db = scanned_dev
    assert query(db, "SELECT count(*) FROM pairs WHERE class_a = class_b") == [(0,)]
    assert query(db, "SELECT count(*) FROM pairs WHERE NOT path_a < path_b") == [(0,)]
    assert query(db, "SELECT count(*) FROM pairs")[0][0] > 0


def test_move_between_folders_is_a_relabel(dev_copy, run_scan):
    root, db = dev_copy
    moved = "Joe_Biden/biden.jpg"
    before = pairs_of(db, moved)
    assert any("Joseph_Biden/" in a + b for a, b, _ in before)
    encoded_before = query(db, "SELECT value FROM counters WHERE name = 'encoded_total'")
    shutil.move(root / moved, root / "Joseph_Biden" / "biden.jpg")
    stats = run_scan(root, db)
    assert stats.encoded == 0 and stats.moved == 1 and stats.removed == 0
    assert query(db, "SELECT value FROM counters WHERE name = 'encoded_total'") == encoded_before
    assert pairs_of(db, moved) == []
    after = pairs_of(db, "Joseph_Biden/biden.jpg")
    # Its new class-mates are no longer pairs; the other Joe_Biden image now is.
    assert not any(
        a.startswith("Joseph_Biden/") and b.startswith("Joseph_Biden/") for a, b, _ in after
    )
    assert ("Joe_Biden/biden2.jpg", "Joseph_Biden/biden.jpg") in [(a, b) for a, b, _ in after]


def test_delete_removes_its_pairs(dev_copy, run_scan):
    root, db = dev_copy
    gone = "Joe_Biden/biden2.jpg"
    assert pairs_of(db, gone)
    (root / gone).unlink()
    stats = run_scan(root, db)
    assert stats.removed == 1 and stats.encoded == 0
    assert pairs_of(db, gone) == []
    assert query(db, "SELECT count(*) FROM images WHERE path = ?", [gone]) == [(0,)]
    assert query(
        db, "SELECT count(*) FROM neighbors n LEFT JOIN files f ON f.id = n.dst WHERE f.id IS NULL"
    ) == [(0,)]


def test_bad_files_get_a_status_and_the_run_continues(tmp_path, run_scan):
    root = tmp_path / "data"
    (root / "Mixed").mkdir(parents=True)
    (root / "Other").mkdir()
    shutil.copy2(DEV_FACES / "Charlton_Heston" / "pilatus800.jpg", root / "Mixed" / "mountain.jpg")
    (root / "Mixed" / "empty.png").write_bytes(b"")
    (root / "Mixed" / "text.jpg").write_text("not an image at all")
    data = (DEV_FACES / "Joe_Biden" / "biden.jpg").read_bytes()
    (root / "Mixed" / "truncated.jpg").write_bytes(data[: len(data) // 3])
    shutil.copy2(DEV_FACES / "Amy" / "amy1.png", root / "Mixed" / "good.png")
    shutil.copy2(DEV_FACES / "Amy" / "amy2.png", root / "Other" / "good.png")
    db = tmp_path / "s.duckdb"
    stats = run_scan(root, db)
    status = dict(query(db, "SELECT path, status FROM images"))
    messages = dict(query(db, "SELECT path, message FROM images"))
    assert status["Mixed/mountain.jpg"] == "no_face"
    assert status["Mixed/empty.png"] == "unreadable" and "empty" in messages["Mixed/empty.png"]
    assert status["Mixed/text.jpg"] == "unreadable"
    assert status["Mixed/truncated.jpg"] == "unreadable"
    assert "truncated" in messages["Mixed/truncated.jpg"].lower()
    assert status["Mixed/good.png"] == "ok" and status["Other/good.png"] == "ok"
    assert stats.failed == 3 and stats.no_face == 1
    bad = ["Mixed/mountain.jpg", "Mixed/empty.png", "Mixed/text.jpg", "Mixed/truncated.jpg"]
    for path in bad:
        assert pairs_of(db, path) == []
    # The two Amy images are still compared and paired.
    assert pairs_of(db, "Mixed/good.png")
    # Failures are final for that content: a rescan does not try them again.
    assert run_scan(root, db).encoded == 0


def test_no_face_image_gets_no_pairs(scanned_dev):
    _, db = scanned_dev
    assert query(db, "SELECT status FROM images WHERE path = 'Charlton_Heston/pilatus800.jpg'") == [
        ("no_face",)
    ]
    assert pairs_of(db, "Charlton_Heston/pilatus800.jpg") == []


def test_japanese_name_with_comma_survives_export_csv(tmp_path, run_scan, seed_encodings, capsys):
    root = tmp_path / "data"
    a, b = root / "風間杜夫", root / "風間, 杜夫"
    a.mkdir(parents=True)
    b.mkdir()
    name = "風間杜夫_0uGH.jpg.png_default.png_0,1_align_resize.png"
    shutil.copy2(DEV_FACES / "Leonard" / "leonard1.png", a / name)
    shutil.copy2(DEV_FACES / "Leonard" / "leonard2.png", b / "レナード, 2.png")
    db = seed_encodings(tmp_path / "s.duckdb")
    run_scan(root, db)
    out = tmp_path / "pairs.csv"
    assert main(["export", "--db", str(db), "--csv", str(out)]) == 0
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert rows[0] == ["path_a", "path_b", "score"]
    got = {(r[0], r[1]) for r in rows[1:]}
    assert ("風間, 杜夫/レナード, 2.png", f"風間杜夫/{name}") in got
    assert all(len(r) == 3 for r in rows)


def test_scan_waits_out_another_process_holding_the_store(tmp_path, run_scan, seed_encodings):
    """The real lock of another process, waited out (open_store's waiting itself, on an
    injected clock: tests/test_store_lock.py). The store already holds the encodings:
    the wait is the point, not the encodes."""
    root = tmp_path / "data"
    for cls in ("Amy", "Penny"):
        shutil.copytree(DEV_FACES / cls, root / cls)
    db = seed_encodings(tmp_path / "s.duckdb")
    with store_held_by_another_process(db) as holder:
        started = time.monotonic()
        # Held for 2 s of the scan's own time, then let go.
        letting_go = threading.Timer(2.0, release, [holder])
        letting_go.start()
        try:
            stats = run_scan(root, db)
        finally:
            letting_go.cancel()
            letting_go.join()
        waited = time.monotonic() - started
    assert waited >= 2.0  # it really was held off
    assert stats.encoded == 0 and stats.images == 10 and stats.removed == 61


def test_scan_json_and_top_formats(dev_copy, capsys):
    root, db = dev_copy
    assert main(["scan", str(root), "--db", str(db), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("images", "encoded", "reused", "removed", "failed", "pairs"):
        assert key in out
    assert out["images"] == 71 and out["encoded"] == 0
    assert main(["top", "--db", str(db), "-n", "3", "--format", "json"]) == 0
    top = json.loads(capsys.readouterr().out)
    assert len(top) == 3 and top[0]["score"] >= top[1]["score"] >= top[2]["score"]
    assert main(["top", "--db", str(db), "-n", "2", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("score,path_a") and len(lines) == 3
    assert main(["sql", "--db", str(db), "SELECT count(*) AS n FROM images"]) == 0
    assert "71" in capsys.readouterr().out


def test_sql_command_reports_a_bad_query(scanned_dev, capsys):
    _, db = scanned_dev
    assert main(["sql", "--db", str(db), "SELECT nope FROM pairs"]) == 4
    assert "query failed" in capsys.readouterr().err


@pytest.mark.parametrize("missing", ["never-created.duckdb"])
def test_reading_a_missing_store_is_a_clear_error(tmp_path, capsys, missing):
    assert main(["top", "--db", str(tmp_path / missing)]) == 3
    assert "run `facelint scan` first" in capsys.readouterr().err


def test_changing_the_threshold_rescores_every_pair(dev_copy, run_scan):
    root, db = dev_copy
    before = query(db, "SELECT count(*) FROM pairs")[0][0]
    stats = run_scan(root, db, threshold=0.6)
    assert stats.full_compare and stats.encoded == 0
    assert query(db, "SELECT min(score) FROM pairs")[0][0] >= 0.6
    assert 0 < stats.pairs < before
    assert run_scan(root, db, threshold=0.6).full_compare is False


def test_pixel_limit_refuses_a_decompression_bomb(tmp_path, run_scan):
    root = tmp_path / "data"
    (root / "Big").mkdir(parents=True)
    shutil.copy2(DEV_FACES / "Joe_Biden" / "biden2.jpg", root / "Big" / "huge.jpg")  # 1200²
    db = tmp_path / "s.duckdb"
    stats = run_scan(root, db, max_pixels=1_000_000)
    assert stats.failed == 1
    ((status, message),) = query(db, "SELECT status, message FROM images")
    assert status == "unreadable" and "over the limit" in message
