"""Issue 16, item 1: a backup brings the whole review back into a store rebuilt from the
files: pair decisions, suggestion decisions (accepted, rejected, skipped; a stranger's
too), face picks and the file actions' log. Real faces, real scans, the dashboard's own
actions, the command line in-process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from daemon.cli import main
from store import decisions, embeddings, suggestions
from store.clock import utcnow
from store.connection import open_store
from store.vocab import Decision, Kind, State
from tests.conftest import REPO

# The dev faces, changed so that the queue holds every kind: a copy (duplicate), an
# image in the wrong folder (misfiled), one of a person no other folder holds (stranger),
# the two Biden folders (same_person). Amy's folder is renamed: it keeps its folder id in
# the store that saw the rename, and a store rebuilt from the files numbers it last, so
# every suggestion id there differs from the backup's and must be translated.
RENAMED = ("Amy", "Zoe_Amy")


def plant(root: Path) -> None:
    (root / RENAMED[0]).rename(root / RENAMED[1])
    shutil.copy2(root / "Penny" / "penny1.png", root / "Raj" / "penny1.png")
    (root / "Barack_Obama" / "obama1.jpg").rename(root / "Sheldon" / "obama1.jpg")
    # Nadia Petrova leaves the data set but for one photo, filed under Howard.
    (root / "Nadia_Petrova" / "Nadia_Petrova_0001.jpg").rename(root / "Howard" / "nadia.jpg")
    shutil.rmtree(root / "Nadia_Petrova")


def read(db: Path, sql: str, params: list[Any] | None = None) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def review(db: Path) -> dict[str, Any]:
    """The review as a reviewer sees it, in terms that do not depend on the store's own
    numbering (folder ids, action ids, batch numbers)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        by_id = {
            r[0]: r[1:]
            for r in con.execute(
                "SELECT id, kind, class_a, class_b, path FROM suggestions"
            ).fetchall()
        }
        # The decided suggestions, every field a reviewer sees. The open ones are the
        # daemon's computation, not the review: a fresh scan and an incremental build of
        # the same files may still differ at the margin there (issue 16, item 5).
        decided = sorted(
            con.execute(
                """SELECT kind, class_a, class_b, path, state, active, decided_by,
                          decided_at, target, reopened_why FROM suggestions
                   WHERE state <> ?""",
                [str(State.OPEN)],
            ).fetchall(),
            key=repr,
        )
        pair_decisions = con.execute("SELECT * FROM decisions ORDER BY hash_a, hash_b").fetchall()
        picks = con.execute("SELECT * FROM face_picks ORDER BY hash, class").fetchall()
        faces = con.execute("SELECT path, face FROM images ORDER BY path").fetchall()
        log = con.execute(
            """SELECT id, acted_at, who, action, src, dst, hash_a, hash_b, undone_at, undo_of,
                      batch, suggestion FROM actions ORDER BY id"""
        ).fetchall()
    finally:
        con.close()
    position = {r[0]: i for i, r in enumerate(log)}
    batch_start: dict[int, int] = {}
    actions = []
    for i, (_id, *what, undo_of, batch, sid) in enumerate(log):
        if batch is not None:
            batch_start.setdefault(batch, i)
        actions.append(
            (
                *what,
                None if undo_of is None else position[undo_of],
                None if batch is None else batch_start[batch],
                None if sid is None else by_id[sid],
            )
        )
    return {
        "decided": decided,
        "pair_decisions": pair_decisions,
        "face_picks": picks,
        "faces": faces,
        "actions": actions,
    }


def one(db: Path, kind: str, state: str = State.OPEN) -> suggestions.Suggestion:
    with open_store(db, read_only=True, timeout=5) as con:
        found = suggestions.queue(con, state, [kind], 100)
    assert found, f"no {state} {kind} suggestion in the dev set as planted"
    return found[0]


def folder_ids(db: Path) -> dict[str, int]:
    return dict(read(db, "SELECT name, id FROM folders"))


def test_a_rebuilt_store_gets_the_whole_review_back(
    dev_copy, run_scan, seed_encodings_only, tmp_path, capsys
):
    from dashboard import actions
    from dashboard.cards import misfiled as misfiled_card
    from dashboard.cards import same_person
    from dashboard.settings import parse_args

    root, db = dev_copy
    plant(root)
    run_scan(root, db)
    settings = parse_args(
        ["--db", str(db), "--root", str(root), "--allow-file-actions", "--user", "tester"]
    )

    # Suggestions: a merge (accepted, a batch of moves), a misfile moved, undone, then
    # rejected, the copy skipped, the stranger accepted without a move.
    biden = one(db, Kind.SAME_PERSON)
    assert {biden.class_a, biden.class_b} == {"Joe_Biden", "Joseph_Biden"}
    misfiled = one(db, Kind.MISFILED)
    duplicate = one(db, Kind.DUPLICATE)
    stranger = one(db, Kind.STRANGER)
    moved = misfiled_card.move_image(settings, misfiled)
    actions.undo(settings, moved.action_id)
    actions.record_suggestion(settings, one(db, Kind.MISFILED), Decision.REJECTED)
    actions.record_suggestion(settings, duplicate, Decision.SKIPPED)
    actions.record_suggestion(settings, stranger, Decision.ACCEPTED)
    same_person.merge(settings, biden, "Joseph_Biden")
    # Pair decisions of their own, and a face picked in a group photo.
    pairs = read(db, "SELECT hash_a, hash_b FROM pairs WHERE decision IS NULL LIMIT 2")
    assert len(pairs) == 2
    with open_store(db, timeout=5) as con:
        decisions.record_decision(con, *pairs[0], Decision.DIFFERENT, "tester", note="no")
        decisions.record_decision(con, *pairs[1], Decision.SKIPPED, "tester")
        (bbt,) = con.execute("SELECT hash FROM files WHERE path = 'Sheldon/bbt1.jpg'").fetchone()
        embeddings.record_face_pick(con, bbt, "Sheldon", 1, "tester", utcnow())
    run_scan(root, db)  # the daemon sees the merge and the pick
    before = review(db)
    states = {row[0]: row[4] for row in before["decided"]}
    assert states == {
        Kind.SAME_PERSON: State.ACCEPTED,
        Kind.MISFILED: State.REJECTED,
        Kind.DUPLICATE: State.SKIPPED,
        Kind.STRANGER: State.ACCEPTED,
    }
    assert [a[2] for a in before["actions"]] == ["move", "undo", "move", "move"]
    assert ("Sheldon/bbt1.jpg", 1) in before["faces"]
    ids_before = folder_ids(db)

    backup = tmp_path / "review-backup.json"
    assert main(["export", "--db", str(db), "--decisions", str(backup)]) == 0
    assert "4 suggestion decisions" in capsys.readouterr().err
    doc = json.loads(backup.read_text(encoding="utf-8"))
    assert (doc["format"], doc["version"]) == ("facelint-review-backup", 1)

    # The store is lost; a scan rebuilds what the files allow, and nothing of the review.
    # (The new store starts with the dev faces' encodings: the same files encode the same,
    # and what the backup must survive is everything else made anew.)
    db.unlink()
    run_scan(root, seed_encodings_only(db))
    assert read(db, "SELECT count(*) FROM suggestion_decisions") == [(0,)]
    assert folder_ids(db)["Joseph_Biden"] != ids_before["Joseph_Biden"]

    assert main(["import", "--db", str(db), "--decisions", str(backup)]) == 0
    said = capsys.readouterr().out
    assert "suggestion decisions" in said and "4 new" in said
    run_scan(root, db)  # the daemon's next run: the restored pick takes effect
    assert review(db) == before

    # Importing again changes nothing at all.
    tables = [
        "decisions",
        "suggestion_decisions",
        "suggestion_rows",
        "face_picks",
        "actions",
        "folders",
        "counters",
    ]
    snapshot = {t: sorted(read(db, f"SELECT * FROM {t}"), key=repr) for t in tables}
    assert main(["import", "--db", str(db), "--decisions", str(backup)]) == 0
    assert "nothing new" in capsys.readouterr().out
    assert {t: sorted(read(db, f"SELECT * FROM {t}"), key=repr) for t in tables} == snapshot


def _export(db: Path, path: Path) -> dict[str, Any]:
    assert main(["export", "--db", str(db), "--decisions", str(path)]) == 0
    return json.loads(path.read_text(encoding="utf-8"))


def test_a_decision_the_store_made_later_is_kept_an_older_one_replaced(dev_copy, tmp_path):
    _, db = dev_copy
    biden = one(db, Kind.SAME_PERSON)
    a, b = read(db, "SELECT hash_a, hash_b FROM pairs LIMIT 1")[0]
    then = datetime(2026, 6, 1, 12, 0, 0, 123456)
    with open_store(db, timeout=5) as con:
        suggestions.decide(con, biden.id, Decision.REJECTED, "backup", then)
        decisions.record_decision(con, a, b, Decision.DIFFERENT, "backup", now=then)
    backup = tmp_path / "b.json"
    _export(db, backup)
    # Later, in the store: the suggestion accepted, the pair skipped. Those stay.
    later, earlier = then + timedelta(days=1), then - timedelta(days=1)
    with open_store(db, timeout=5) as con:
        suggestions.decide(con, biden.id, Decision.ACCEPTED, "store", later)
        decisions.record_decision(con, a, b, Decision.SKIPPED, "store", now=earlier)
    assert main(["import", "--db", str(db), "--decisions", str(backup)]) == 0
    assert read(db, "SELECT state, decided_by FROM suggestions WHERE id = ?", [biden.id]) == [
        ("accepted", "store")
    ]
    # The pair's decision in the store is older than the backup's: the backup's wins.
    got = read(
        db,
        "SELECT decision, decided_by, decided_at FROM decisions WHERE hash_a = ? AND hash_b = ?",
        sorted((a, b)),
    )
    assert got == [("different", "backup", then)]


def test_an_older_facelints_decisions_csv_is_restored(dev_copy, tmp_path):
    _, db = dev_copy
    a, b = read(db, "SELECT hash_a, hash_b FROM pairs LIMIT 1")[0]
    old = tmp_path / "decisions.csv"
    old.write_text(
        "hash_a,hash_b,decision,note,decided_by,decided_at,path_a,path_b\r\n"
        f"{a},{b},different,,tester,2026-01-02 03:04:05.000006,x.jpg,y.jpg\r\n",
        encoding="utf-8",
    )
    assert main(["import", "--db", str(db), "--decisions", str(old)]) == 0
    assert read(db, "SELECT decision, note, decided_by, decided_at FROM decisions") == [
        ("different", None, "tester", datetime(2026, 1, 2, 3, 4, 5, 6))
    ]


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"hello", "is not a facelint backup"),
        (b"{not json", "not valid JSON"),
        (b'{"format": "something-else", "version": 1}', "is not a facelint backup"),
        (b"[1, 2]", "is not a facelint backup"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"format": "facelint-review-backup", "version": 99}', "newer facelint"),
        (
            b'{"format": "facelint-review-backup", "version": 1, "pair_decisions": '
            b'[{"hash_a": "a", "hash_b": "b", "decision": "maybe", "decided_at": "2026-01-01"}]}',
            "pair_decisions[0]: decision 'maybe'",
        ),
        (
            b'{"format": "facelint-review-backup", "version": 1, "suggestion_decisions": '
            b'[{"id": "same:1:2", "decision": "accepted", "decided_at": "yesterday"}]}',
            "decided_at 'yesterday'",
        ),
        (
            b'{"format": "facelint-review-backup", "version": 1, "actions": [{"id": 1}]}',
            "actions[0]: acted_at is missing",
        ),
        # What would reach a file action: a folder "." (a merge into the root), an undo
        # that leads out of the data folder.
        (
            b'{"format": "facelint-review-backup", "version": 1, "folders": {"3": "."}}',
            "not a plain folder name",
        ),
        (
            b'{"format": "facelint-review-backup", "version": 1, "actions": [{"id": 1, '
            b'"acted_at": "2026-01-01", "action": "move", "src": "../../etc/passwd", '
            b'"dst": "Amy/x.jpg"}]}',
            "not a path inside the data folder",
        ),
        (
            b'{"format": "facelint-review-backup", "version": 1, "suggestion_decisions": '
            b'[{"id": "same:1:2", "decision": "accepted", "decided_at": "2026-01-01", '
            b'"target": "a/b"}]}',
            "target 'a/b': not a plain folder name",
        ),
    ],
)
def test_a_bad_or_foreign_file_is_refused_and_nothing_is_written(
    dev_copy, tmp_path, capsys, content, said
):
    _, db = dev_copy
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    before = db.read_bytes()
    assert main(["import", "--db", str(db), "--decisions", str(bad)]) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err, err
    assert db.read_bytes() == before


def test_import_needs_a_store_and_a_readable_file(tmp_path, capsys):
    missing = tmp_path / "none.json"
    assert main(["import", "--db", str(tmp_path / "x.duckdb"), "--decisions", str(missing)]) == 2
    assert "cannot read" in capsys.readouterr().err
    ok = tmp_path / "ok.json"
    ok.write_text('{"format": "facelint-review-backup", "version": 1}', encoding="utf-8")
    assert main(["import", "--db", str(tmp_path / "x.duckdb"), "--decisions", str(ok)]) == 3
    assert "run `facelint scan` first" in capsys.readouterr().err
    assert not (tmp_path / "x.duckdb").exists()


def test_a_backup_goes_through_a_pipe(dev_copy, tmp_path):
    _, db = dev_copy
    biden = one(db, Kind.SAME_PERSON)
    with open_store(db, timeout=5) as con:
        suggestions.decide(con, biden.id, Decision.SKIPPED, "tester", datetime(2026, 2, 3))
    env = dict(os.environ, FACELINT_CONFIG=str(tmp_path / "none"))
    cli = [sys.executable, "-m", "daemon.cli"]
    out = subprocess.run(
        [*cli, "export", "--db", str(db), "--decisions", "-"],
        capture_output=True,
        cwd=REPO,
        env=env,
        check=True,
        timeout=120,
    ).stdout
    assert json.loads(out)["suggestion_decisions"][0]["id"] == biden.id
    with open_store(db, timeout=5) as con:
        suggestions.undo(con, biden.id)
    proc = subprocess.run(
        [*cli, "import", "--db", str(db), "--decisions", "-"],
        input=out,
        capture_output=True,
        cwd=REPO,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert read(db, "SELECT state FROM suggestions WHERE id = ?", [biden.id]) == [("skipped",)]
