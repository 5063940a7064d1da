"""Schema migrations: stores written by earlier versions open in this one, their data kept."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb

from store import meta
from store.db import Store
from store.queries import pairs_page
from store.queries.pairs_page import PairFilter
from store.schema import SCHEMA_VERSION, ensure_schema, migrations, stored_version
from store.vocab import Decision

NOW = datetime(2026, 1, 2, 3, 4, 5)


def _old_store(db: Path, version: int) -> duckdb.DuckDBPyConnection:
    """A store as facelint at `version` left it (tables by that version's migrations)."""
    con = duckdb.connect(str(db))
    ensure_schema(con, target=version)
    assert stored_version(con) == version
    return con


def test_every_version_has_its_migration() -> None:
    assert all(migrations(v) for v in range(1, SCHEMA_VERSION + 1))


def test_a_version_3_skip_decision_becomes_skipped(tmp_path: Path) -> None:
    db = tmp_path / "facelint.duckdb"
    con = _old_store(db, 3)
    con.execute(
        """INSERT INTO files (id, path, class, size, mtime_ns, hash, first_seen, last_seen)
           VALUES (1, 'A/a.jpg', 'A', 1, 1, 'ha', $now, $now),
                  (2, 'B/b.jpg', 'B', 1, 1, 'hb', $now, $now),
                  (3, 'C/c.jpg', 'C', 1, 1, 'hc', $now, $now)""",
        {"now": NOW},
    )
    con.execute(
        """INSERT INTO pair_rows (lo, hi, cosine, score, first_seen, last_seen)
           VALUES (1, 2, 0.9, 0.9, $now, $now), (1, 3, 0.8, 0.8, $now, $now)""",
        {"now": NOW},
    )
    con.execute(
        """INSERT INTO decisions (hash_a, hash_b, decision, note, decided_by, decided_at)
           VALUES ('ha', 'hb', 'skip', NULL, 'tester', $now),
                  ('ha', 'hc', 'different', NULL, 'tester', $now)""",
        {"now": NOW},
    )
    con.close()

    store = Store(db, lock_timeout=5)
    store.write(lambda con: None)  # the first write open migrates

    assert store.read(stored_version) == SCHEMA_VERSION
    with store.reading() as con:
        stored = dict(con.execute("SELECT hash_b, decision FROM decisions").fetchall())
        assert stored == {"hb": Decision.SKIPPED, "hc": Decision.DIFFERENT}
        assert con.execute("SELECT decision FROM pairs WHERE path_b = 'B/b.jpg'").fetchall() == [
            ("skipped",)
        ]
        skipped = pairs_page.pair_page(con, PairFilter(state=Decision.SKIPPED), 10)
        assert [(p.a.path, p.b.path) for p in skipped] == [("A/a.jpg", "B/b.jpg")]
        assert pairs_page.count_pairs(con, PairFilter(state="decided")) == 1
        assert pairs_page.count_pairs(con, PairFilter()) == 0


def test_a_version_1_store_migrates_through_every_version(tmp_path: Path) -> None:
    """Version 1 kept one vector per embedding and no folders: version 2 moves the vector
    to `faces` and gives every class a folder id (folders before files, so the order of
    the table modules in the runner matters)."""
    db = tmp_path / "facelint.duckdb"
    con = _old_store(db, 1)
    con.execute(
        """INSERT INTO files (id, path, class, size, mtime_ns, hash, first_seen, last_seen,
                              dirty)
           VALUES (1, 'Amy/a.jpg', 'Amy', 1, 1, 'ha', $now, $now, false),
                  (2, 'Bob/b.jpg', 'Bob', 1, 1, 'hb', $now, $now, false)""",
        {"now": NOW},
    )
    con.execute(
        """INSERT INTO embeddings (hash, model, status, message, faces, box_left, box_top,
                                   box_right, box_bottom, whole_image, width, height, vector,
                                   encoded_at)
           VALUES ('ha', 'dlib:x', 'ok', '', 1, 1, 2, 3, 4, false, 10, 10, [0.5, 0.5], $now)""",
        {"now": NOW},
    )
    meta.set_meta(con, model="dlib:x")
    con.close()

    store = Store(db, lock_timeout=5)
    store.write(lambda con: None)
    with store.reading() as con:
        assert stored_version(con) == SCHEMA_VERSION
        faces = con.execute(
            "SELECT hash, model, face, box_left, box_bottom, vector FROM faces"
        ).fetchall()
        assert faces == [("ha", "dlib:x", 0, 1, 4, [0.5, 0.5])]
        folders = dict(con.execute("SELECT name, id FROM folders").fetchall())
        assert sorted(folders) == ["Amy", "Bob"]
        assert dict(con.execute("SELECT class, folder_id FROM files").fetchall()) == folders
        # Compared again under the new calibration.
        assert con.execute("SELECT bool_and(dirty) FROM files").fetchone() == (True,)
        image = con.execute(
            "SELECT path, status, box_left, box_bottom, image_id FROM images WHERE hash = 'ha'"
        ).fetchall()
        assert image == [("Amy/a.jpg", "ok", 1, 4, 1)]
