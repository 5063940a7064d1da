"""The review's backup: what no scan of the files can rebuild, in one readable file.

`facelint export --decisions FILE` writes it, `facelint import --decisions FILE` restores
it into any store of the same images, one rebuilt from scratch included. It holds the
pair decisions, the suggestion decisions (with the suggestion as the view showed it,
its target and its reopening), the face picks and the file actions' log (batches and the
suggestion each carried out), keyed the way the store keys them: content hashes, folder
names, suggestion ids. Folder ids are the store's own; the file says the name of each it
uses, and an import translates them to the importing store's.

The file is one JSON object, one record a line (FORMAT, VERSION):

    {"format": "facelint-review-backup", "version": 1, "exported_at": "...",
     "store": {"store_id": ..., "schema_version": ..., "model": ...},
     "folders": {"3": "Joe_Biden", ...},
     "pair_decisions": [...], "suggestion_decisions": [...], "face_picks": [...],
     "actions": [...]}

An import is one transaction and idempotent: a record already there is kept, one the
store changed later than the backup is kept, the rest is added. A file that is not a
backup, or not one this facelint reads, is refused before anything is written. The CSV
of pair decisions older facelints wrote is read too.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

import duckdb

from store import actions, decisions, embeddings, folders, meta, suggestions
from store.clock import utcnow
from store.sql import Merged
from store.vocab import PAIR_DECISIONS, SUGGESTION_DECISIONS, Kind

FORMAT = "facelint-review-backup"
VERSION = 1
# What older facelints wrote (`export --decisions` before backups held the whole review).
LEGACY_CSV_HEADER = [*decisions.COLUMNS, "path_a", "path_b"]
SECTIONS = ("pair_decisions", "suggestion_decisions", "face_picks", "actions")


class BackupError(ValueError):
    """A file that is not a backup this facelint can restore; nothing was written."""


# -- export --------------------------------------------------------------------------------


def export_review(con: duckdb.DuckDBPyConnection, now: datetime | None = None) -> dict[str, Any]:
    """The backup of the store on `con`, as the JSON document's object."""
    decided = suggestions.export_decided(con)
    log = actions.export_all(con)
    used: set[int] = set()
    for d in decided:
        used.update(suggestions.id_folders(d["id"]))
        row = d["suggestion"]
        if row is not None:
            used.update(v for v in (row["folder_a"], row["folder_b"]) if v is not None)
    for a in log:
        if a["suggestion"] is not None:
            used.update(suggestions.id_folders(a["suggestion"]))
    names = folders.load_folders(con)
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": now or utcnow(),
        "store": {
            "store_id": meta.get_meta(con, "store_id"),
            "schema_version": meta.get_meta(con, "schema_version"),
            "model": meta.model(con),
        },
        "folders": {str(fid): names[fid] for fid in sorted(used) if fid in names},
        "pair_decisions": decisions.export_rows(con),
        "suggestion_decisions": decided,
        "face_picks": embeddings.export_picks(con),
        "actions": log,
    }


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=_encode)


def _encode(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON: {value!r}")


def write_backup(doc: Mapping[str, Any], out: TextIO) -> int:
    """The document as JSON, one record a line (a person can read it, and diff two);
    returns how many records it holds."""
    head = {k: v for k, v in doc.items() if k not in SECTIONS}
    out.write("{" + ",\n ".join(f"{_json(k)}: {_json(v)}" for k, v in head.items()))
    for name in SECTIONS:
        records = doc.get(name, [])
        body = ",\n  ".join(_json(r) for r in records)
        out.write(f",\n {_json(name)}: [" + (f"\n  {body}\n ]" if records else "]"))
    out.write("}\n")
    return sum(counts(doc).values())


def counts(doc: Mapping[str, Any]) -> dict[str, int]:
    return {name: len(doc.get(name, [])) for name in SECTIONS}


# -- reading and checking a file -------------------------------------------------------------


@dataclass
class Backup:
    """A checked backup: every record's values of the types the store keeps."""

    folders: dict[int, str] = field(default_factory=dict)
    pair_decisions: list[dict[str, Any]] = field(default_factory=list)
    suggestion_decisions: list[dict[str, Any]] = field(default_factory=list)
    face_picks: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    legacy: bool = False


def read_backup(text: str, name: str = "the file") -> Backup:
    """Parse and check a backup (or an older facelint's decisions CSV); BackupError,
    naming the file and what is wrong, for anything else."""
    body = text.removeprefix("\ufeff")
    first = body.lstrip()[:1]
    if first == "{":
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise BackupError(f"{name} is not a facelint backup: not valid JSON ({exc})") from exc
        return _check_document(doc, name)
    if body.split("\n", 1)[0].rstrip("\r") == ",".join(LEGACY_CSV_HEADER):
        return _read_legacy_csv(body, name)
    raise BackupError(
        f"{name} is not a facelint backup (one is written by `facelint export --decisions`)"
    )


def _check_document(doc: Any, name: str) -> Backup:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BackupError(
            f'{name} is not a facelint backup: a JSON object with "format": "{FORMAT}" is'
        )
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BackupError(f"{name}: the backup's version {version!r} is not a version")
    if version > VERSION:
        raise BackupError(
            f"{name} was written by a newer facelint (backup version {version}; this one "
            f"reads up to {VERSION}): upgrade facelint to restore it"
        )
    raw_folders = doc.get("folders", {})
    if not isinstance(raw_folders, dict):
        raise BackupError(f"{name}: folders: not an object of folder id -> name")
    out = Backup()
    for key, value in raw_folders.items():
        try:
            if not (isinstance(key, str) and key.isdigit()):
                raise ValueError("not a folder id")
            out.folders[int(key)] = _folder(value)
        except (TypeError, ValueError) as exc:
            raise BackupError(f"{name}: folders: {key!r}: {value!r}: {exc}") from exc
    for section, spec in _SPECS.items():
        records = doc.get(section, [])
        if not isinstance(records, list):
            raise BackupError(f"{name}: {section}: not a list")
        checked = [_check(spec, r, f"{name}: {section}[{i}]") for i, r in enumerate(records)]
        setattr(out, section, checked)
    return out


# A field's check: (required, convert). convert raises ValueError/TypeError on a bad value.
Check = tuple[bool, Callable[[Any], Any]]


def _text(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError("not text")
    return v


def _name(v: Any) -> str:
    if not _text(v):
        raise ValueError("empty")
    return v


def _folder(v: Any) -> str:
    # Folder names reach file actions (a merge's target, an undo's way back): a backup
    # must not plant one that is not a single plain component under the root.
    if _name(v) in (".", "..") or "/" in v or "\x00" in v:
        raise ValueError("not a plain folder name")
    return v


def _path(v: Any) -> str:
    # A path under the root, as the store keeps it: relative, no step up or aside.
    parts = _name(v).split("/")
    if "\x00" in v or any(p in ("", ".", "..") for p in parts):
        raise ValueError("not a path inside the data folder")
    return v


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError("not a whole number")
    return v


def _number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise TypeError("not a number")
    return float(v)


def _time(v: Any) -> datetime:
    t = datetime.fromisoformat(_text(v))
    # The store keeps UTC without a zone (store/clock.py); a zone given is converted.
    return t if t.tzinfo is None else t.astimezone(UTC).replace(tzinfo=None)


def _one_of(values: tuple[str, ...]) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if v not in values:
            raise ValueError(f"not one of {', '.join(values)}")
        return str(v)

    return check


def _face(v: Any) -> int:
    if _int(v) < 0 or v > 32767:
        raise ValueError("not a face number")
    return v


_SUGGESTION_ROW: dict[str, Check] = {
    "kind": (True, _one_of(tuple(k.value for k in Kind))),
    "model": (False, _text),
    "hash": (False, _text),
    "folder_a": (False, _int),
    "folder_b": (False, _int),
    "rank_score": (True, _number),
    "strength": (False, _number),
    "images": (False, _int),
    "evidence": (True, _text),
    "class_a": (False, _folder),
    "class_b": (False, _folder),
    "path": (False, _path),
    "first_seen": (True, _time),
    "last_seen": (True, _time),
}


def _suggestion_row(v: Any) -> dict[str, Any]:
    return _check(_SUGGESTION_ROW, v, "suggestion")


_SPECS: dict[str, dict[str, Check]] = {
    "pair_decisions": {
        "hash_a": (True, _name),
        "hash_b": (True, _name),
        "decision": (True, _one_of(tuple(d.value for d in PAIR_DECISIONS))),
        "note": (False, _text),
        "decided_by": (False, _text),
        "decided_at": (True, _time),
        "path_a": (False, _path),
        "path_b": (False, _path),
    },
    "suggestion_decisions": {
        "id": (True, _name),
        "decision": (True, _one_of(tuple(d.value for d in SUGGESTION_DECISIONS))),
        "rank_score": (False, _number),
        "images": (False, _int),
        "target": (False, _folder),
        "note": (False, _text),
        "decided_by": (False, _text),
        "decided_at": (True, _time),
        "reopened_at": (False, _time),
        "reopened_why": (False, _text),
        "suggestion": (False, _suggestion_row),
    },
    "face_picks": {
        "hash": (True, _name),
        "model": (True, _name),
        "class": (True, _folder),
        "face": (True, _face),
        "picked_by": (False, _text),
        "picked_at": (True, _time),
        "path": (False, _path),
    },
    "actions": {
        "id": (True, _int),
        "acted_at": (True, _time),
        "who": (False, _text),
        "action": (True, _name),
        "src": (True, _path),
        "dst": (True, _path),
        "hash_a": (False, _text),
        "hash_b": (False, _text),
        "undone_at": (False, _time),
        "undo_of": (False, _int),
        "batch": (False, _int),
        "suggestion": (False, _text),
        "hash": (False, _text),
    },
}


def _check(spec: dict[str, Check], record: Any, where: str) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise BackupError(f"{where}: not an object")
    out: dict[str, Any] = {}
    for key, (required, convert) in spec.items():
        value = record.get(key)
        if value is None:
            if required:
                raise BackupError(f"{where}: {key} is missing")
            out[key] = None
            continue
        try:
            out[key] = convert(value)
        except BackupError as exc:
            raise BackupError(f"{where}: {exc}") from exc
        except (TypeError, ValueError) as exc:
            raise BackupError(f"{where}: {key} {value!r}: {exc}") from exc
    return out


def _read_legacy_csv(body: str, name: str) -> Backup:
    rows = list(csv.DictReader(io.StringIO(body, newline="")))
    spec = _SPECS["pair_decisions"]
    out = Backup(legacy=True)
    for i, row in enumerate(rows, start=2):
        # That CSV wrote an empty field for a missing value.
        record = {k: (v if v != "" else None) for k, v in row.items() if k is not None}
        out.pair_decisions.append(_check(spec, record, f"{name}: line {i}"))
    return out


# -- import --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Restored:
    """What an import did, section by section."""

    pair_decisions: Merged
    suggestion_decisions: Merged
    face_picks: Merged
    actions: Merged
    folders_added: int

    def changed(self) -> bool:
        return self.folders_added > 0 or any(
            m.new or m.replaced
            for m in (self.pair_decisions, self.suggestion_decisions, self.face_picks, self.actions)
        )


def import_review(con: duckdb.DuckDBPyConnection, backup: Backup) -> Restored:
    """Merge a checked backup into the store on `con` (a write transaction)."""
    before = len(folders.load_folders(con))
    by_name = folders.ids_by_name(con, list(backup.folders.values()))
    mapping = {fid: by_name[name] for fid, name in backup.folders.items()}
    added = len(folders.load_folders(con)) - before

    def here(sid: str | None) -> str | None:
        return None if sid is None else suggestions.with_folders(sid, mapping)

    decided = []
    for d in backup.suggestion_decisions:
        row = d["suggestion"]
        if row is not None:
            row = {
                **row,
                "folder_a": None if row["folder_a"] is None else mapping.get(row["folder_a"]),
                "folder_b": None if row["folder_b"] is None else mapping.get(row["folder_b"]),
            }
        decided.append({**d, "id": here(d["id"]), "suggestion": row})
    log = [{**a, "suggestion": here(a["suggestion"])} for a in backup.actions]
    restored = Restored(
        pair_decisions=decisions.merge_rows(con, backup.pair_decisions),
        suggestion_decisions=suggestions.merge_decided(con, decided),
        face_picks=embeddings.merge_picks(con, backup.face_picks),
        actions=actions.merge_actions(con, log),
        folders_added=added,
    )
    if added or any(
        m.new or m.replaced for m in (restored.suggestion_decisions, restored.face_picks)
    ):
        # What the daemon computes from changed (folders, picks, the decisions a rejection
        # reopens by): a computation it started before the import is not written, and the
        # next one starts from the restored review.
        meta.bump_counter(con, "generation", 1)
    return restored
