"""What the decision buttons do: record a decision, and for moves and removals also move
the file and log it, or undo such a move.

A file action happens inside the store transaction that logs it: the rename runs between
the log insert and the commit, so a failed rename leaves no log entry, and a failed commit
moves the file back. Only the files change; the daemon (or the next scan) sees the move
and updates the store, carrying the file's identity and history along.

Every move is for the content reviewed: the hash the store holds for the card's or the
pair's image (a merge: each file's own), checked by dashboard/files.py before and after
the rename, and logged with the action so that its undo moves that content back only.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from daemon.common.hashing import content_hash
from dashboard import db, files
from dashboard.files import FileActionRefused
from dashboard.queue import CardGone
from dashboard.settings import DashboardSettings
from store import actions as action_log
from store import decisions, embeddings, suggestions
from store.clock import utcnow
from store.queries import images as image_rows
from store.queries import pairs_page
from store.queries.pairs_page import PairView
from store.vocab import Decision


@dataclass(frozen=True)
class Done:
    message: str
    action_id: int | None = None


def _require_file_actions(settings: DashboardSettings) -> None:
    if not settings.allow_file_actions:
        raise FileActionRefused(
            "file actions are off: this dashboard is read-only for files. Start it with "
            "--allow-file-actions (or allow_file_actions = true in facelint.toml) to move files."
        )


def _hashes(pair: PairView) -> tuple[str, str]:
    if pair.a.hash is None or pair.b.hash is None:
        raise FileActionRefused("this pair's images have no content hash yet: rescan first")
    return pair.a.hash, pair.b.hash


def decide(settings: DashboardSettings, pair: PairView, decision: str) -> Done:
    """A decision that touches no file: different people, same person (record only), skip."""
    h1, h2 = _hashes(pair)
    with db.writing(settings) as con:
        decisions.record_decision(con, h1, h2, decision, settings.user)
    return Done(f"{pair.a.name} / {pair.b.name}: {decision}")


def decide_group(
    settings: DashboardSettings,
    image: image_rows.ImageInfo,
    other_class: str,
    flt: pairs_page.PairFilter,
    decision: str,
) -> Done:
    """One decision on every pair (that the filter shows) joining one image to one other
    class: a group photo whose chosen face is a bystander, cleared in one go."""
    with db.writing(settings) as con:
        pairs = pairs_page.image_class_hashes(con, flt, image.id, other_class)
        for h1, h2 in pairs:
            decisions.record_decision(con, h1, h2, decision, settings.user)
    return Done(f"{image.name} / {len(pairs)} images of {other_class}: {decision}")


def clear(settings: DashboardSettings, pair: PairView, only_if: str | None = None) -> Done:
    """Back to unreviewed; with `only_if` (an undo), only while the decision is still that
    one, so an undo never erases a decision someone took since."""
    h1, h2 = _hashes(pair)
    with db.writing(settings) as con:
        cleared = decisions.clear_decision(con, h1, h2, only_if=only_if)
    if only_if is not None and not cleared:
        raise FileActionRefused(
            f"{pair.a.name} / {pair.b.name} is no longer '{only_if}': nothing undone"
        )
    return Done(f"{pair.a.name} / {pair.b.name}: back to unreviewed")


def _act(
    settings: DashboardSettings,
    move: files.Move,
    action: str,
    decision: str,
    hashes: tuple[str, str],
) -> int:
    moved = False
    try:
        with db.writing(settings) as con:
            decisions.record_decision(con, *hashes, decision, settings.user)
            action_id = action_log.log_action(
                con, action, move.src, move.dst, settings.user, hashes, content=move.content[0]
            )
            files.execute(settings.root, move)
            moved = True
    except BaseException:
        if moved:
            # Logged nothing, so move nothing: put the file back.
            files.execute(settings.root, files.Move(move.dst, move.src, move.content))
        raise
    return action_id


def relabel(settings: DashboardSettings, pair: PairView, side: str) -> Done:
    """Same person: move the image on `side` ("a" = left) into the other image's folder."""
    _require_file_actions(settings)
    hashes = _hashes(pair)
    image, other = (pair.a, pair.b) if side == "a" else (pair.b, pair.a)
    move = files.plan_relabel(
        settings.root,
        image.path,
        other.path.split("/", 1)[0],
        (hashes[0] if side == "a" else hashes[1],),
        settings.quarantine,
    )
    action_id = _act(settings, move, "move", Decision.SAME, hashes)
    return Done(f"moved {move.src} → {move.dst}", action_id)


def quarantine(settings: DashboardSettings, pair: PairView, side: str) -> Done:
    """Take the image on `side` out of the data set, into the quarantine folder."""
    _require_file_actions(settings)
    hashes = _hashes(pair)
    image = pair.a if side == "a" else pair.b
    move = files.plan_quarantine(
        settings.root, image.path, settings.quarantine, (hashes[0] if side == "a" else hashes[1],)
    )
    action_id = _act(settings, move, "quarantine", Decision.REMOVED, hashes)
    return Done(f"removed {move.src} from the data set → {move.dst}", action_id)


# A logged action -> the pair decision it made (what its undo clears).
_DECISION_OF = {"move": Decision.SAME, "quarantine": Decision.REMOVED}


def undo(settings: DashboardSettings, action_id: int) -> Done:
    """Move files back where a logged action took them from, and reopen what it decided:
    the pair, or the suggestion. An action done as part of a group (the moves of one
    folder merge) is undone with its whole group: half a merge is nobody's decision."""
    _require_file_actions(settings)
    done: list[files.Move] = []
    try:
        with db.writing(settings) as con:
            group = action_log.get_action(con, action_id)
            if group is None:
                raise FileActionRefused(f"there is no action #{action_id}")
            acts = action_log.action_group(con, action_id)
            for act in acts:
                if not act.undoable:
                    raise FileActionRefused(
                        f"action #{act.id} ({act.action}) cannot be undone"
                        + (" again: it was undone already" if act.undone_at else "")
                    )
            sids = set()
            for act in acts:
                back = files.plan_undo(settings.root, act.src, act.dst, _moved_content(con, act))
                action_log.mark_undone(con, act.id)
                action_log.log_action(
                    con,
                    "undo",
                    back.src,
                    back.dst,
                    settings.user,
                    undo_of=act.id,
                    content=back.content[0] if back.content else None,
                )
                if act.hash_a and act.hash_b:
                    decisions.clear_decision(
                        con, act.hash_a, act.hash_b, only_if=_DECISION_OF[act.action]
                    )
                sid = action_log.action_suggestion(con, act.id)
                if sid is not None:
                    sids.add(sid)
                files.execute(settings.root, back)
                done.append(back)
            for sid in sids:
                suggestions.undo(con, sid)
    except BaseException:
        _put_back(settings, done)
        raise
    # A class folder the undo leaves with no file in it goes: one the batch made for what
    # it moved (a new folder named on a card), or one emptied since; an empty class folder
    # breaks training loaders either way. A folder that still holds a file is not touched.
    for klass in sorted({back.src.split("/", 1)[0] for back in done} - {settings.quarantine}):
        if _holds_no_file(settings, klass):
            _remove_if_empty(settings, klass)
    if len(done) == 1:
        return Done(f"undone #{action_id}: {done[0].src} → {done[0].dst}")
    return Done(f"undone #{action_id} and its group: {len(done)} files moved back")


def _moved_content(con: duckdb.DuckDBPyConnection, act: action_log.ActionRow) -> tuple[str, ...]:
    """The content an action moved, which its undo may move back. Logged with the action;
    for one logged before facelint recorded it: the pair's images, the suggestion's
    image, or what the store has catalogued at its destination since."""
    if act.hash:
        return (act.hash,)
    if act.hash_a and act.hash_b:
        return (act.hash_a, act.hash_b)
    sid = action_log.action_suggestion(con, act.id)
    s = suggestions.get(con, sid) if sid is not None else None
    if s is not None and s.hash:
        return (s.hash,)
    there = image_rows.images_by_path(con, [act.dst]).get(act.dst)
    return (there.hash,) if there is not None and there.hash else ()


def _put_back(settings: DashboardSettings, done: list[files.Move]) -> None:
    """Reverse moves already made when their transaction failed: the log holds none of
    them, so the disk must not either."""
    for move in reversed(done):
        files.execute(settings.root, files.Move(move.dst, move.src, move.content))


# -- suggested mistakes ----------------------------------------------------------------------
# Generic verbs over a suggestion: move files into a folder or into quarantine as one
# undoable batch, merge two folders. What each kind's decision moves is its card's
# (dashboard/cards/<kind>.py); these know no kind.

# A file a decision moves: its root-relative path and the content it must have there.
Moving = tuple[str, tuple[str, ...]]


@dataclass(frozen=True)
class Moved:
    """What carrying out a decision did: its first action (the batch's undo), the moves,
    and whether it made the folder they went into."""

    first: int
    moves: list[files.Move]
    made: bool = False


@dataclass(frozen=True)
class _Planned:
    """One move of a suggestion's decision: its source and the content it must have
    are known up front; its destination is planned just before it is made."""

    action: str
    src: str
    content: tuple[str, ...]
    plan: Callable[[], files.Move]


def _planned(
    action: str,
    moving: Sequence[Moving],
    plan: Callable[[str, tuple[str, ...]], files.Move],
) -> list[_Planned]:
    """One `action` per file, each planned (`plan(path, content)`) just before it is made."""
    return [
        _Planned(action, path, content, functools.partial(plan, path, content))
        for path, content in moving
    ]


def _suggestion_moves(
    settings: DashboardSettings,
    s: suggestions.Suggestion,
    plans: list[_Planned],
    target: str | None,
) -> tuple[int, list[files.Move]]:
    """Carry out an accepted suggestion: every file's content checked first (one that is
    not what was reviewed refuses the whole decision, before anything moves), then each
    move planned just before it is made (so two files of one name get two free names),
    logged, tagged with one batch and the suggestion, and the decision recorded, all in
    one write transaction."""
    _require_file_actions(settings)
    for p in plans:
        files.check_content(settings.root, p.src, p.content)
    done: list[files.Move] = []
    try:
        with db.writing(settings) as con:
            _still_there(con, s)
            ids = []
            for p in plans:
                move = p.plan()
                ids.append(
                    action_log.log_action(
                        con, p.action, move.src, move.dst, settings.user, content=move.content[0]
                    )
                )
                files.execute(settings.root, move)
                done.append(move)
            if not ids:
                raise FileActionRefused(f"{s.id}: no file to move")
            batch = action_log.new_batch(con) if len(ids) > 1 else None
            action_log.tag_actions(con, ids, batch, s.id)
            suggestions.decide(con, s.id, Decision.ACCEPTED, settings.user, utcnow(), target)
    except BaseException:
        _put_back(settings, done)
        raise
    return ids[0], done


def _still_there(con: duckdb.DuckDBPyConnection, s: suggestions.Suggestion) -> None:
    # The daemon may have dropped it since the page loaded (a fix made elsewhere made it
    # moot): say so rather than fail the page.
    if suggestions.get(con, s.id) is None:
        raise CardGone(
            f"{suggestion_title(s)} is no longer suggested (changed since this page loaded)"
        )


def move_into(
    settings: DashboardSettings,
    s: suggestions.Suggestion,
    moving: Sequence[Moving],
    target: str,
    new_folder: bool = False,
) -> Moved:
    """Accept `s` by moving files into the class folder `target`, as one undoable batch.
    `new_folder`: a target that does not exist is made here, and gone again when nothing
    moved into it (an undo that empties it removes it too)."""
    target = files.folder_name(target, "destination folder")
    plans = _planned(
        "move",
        moving,
        lambda path, content: files.plan_relabel(
            settings.root, path, target, content, settings.quarantine
        ),
    )
    folder = files.inside(settings.root, target)
    made = new_folder and not folder.exists() and not folder.is_symlink()
    if made:
        folder.mkdir()
    try:
        first, done = _suggestion_moves(settings, s, plans, target)
    except BaseException:
        if made:
            _remove_if_empty(settings, target)
        raise
    return Moved(first, done, made)


def quarantine_files(
    settings: DashboardSettings, s: suggestions.Suggestion, moving: Sequence[Moving]
) -> Moved:
    """Accept `s` by taking files out of the data set (into the quarantine folder, kept),
    as one undoable batch."""
    plans = _planned(
        "quarantine",
        moving,
        lambda path, content: files.plan_quarantine(
            settings.root, path, settings.quarantine, content
        ),
    )
    first, done = _suggestion_moves(settings, s, plans, settings.quarantine)
    return Moved(first, done)


def stored_contents(images: Sequence[image_rows.ImageInfo]) -> list[Moving]:
    """Images to move, each for the content the store holds for it (what the card showed)."""
    out = []
    for image in images:
        if not image.hash:
            raise FileActionRefused(f"{image.path} has no content hash yet: rescan first")
        out.append((image.path, (image.hash,)))
    return out


def folder_files(settings: DashboardSettings, klass: str) -> list[str]:
    """Every file of a class folder on disk (root-relative), subfolders included."""
    folder = files.inside(settings.root, files.folder_name(klass))
    if not folder.is_dir():
        raise FileActionRefused(f"{klass} is not a folder in the root any more")
    base = files.resolved_root(settings.root)
    found = []
    for dirpath, _dirs, names in os.walk(folder):
        found += [(Path(dirpath) / n).relative_to(base).as_posix() for n in names]
    return sorted(found)


def merge_folders(
    settings: DashboardSettings, s: suggestions.Suggestion, gone: str, keep: str
) -> Done:
    """Accept `s` by moving every file of folder `gone` into `keep`, under a free name,
    as one undoable group; the emptied folder goes away."""
    files.folder_name(keep, "surviving folder")
    files.folder_name(gone, "merged folder")
    moving = folder_files(settings, gone)
    known = db.read(settings, lambda con: image_rows.images_by_path(con, moving))

    def plan(path: str, content: tuple[str, ...]) -> Callable[[], files.Move]:
        return lambda: files.plan_relabel(settings.root, path, keep, content, settings.quarantine)

    planned = []
    for path in moving:
        content = _merged_content(settings, path, known.get(path))
        planned.append(_Planned("move", path, content, plan(path, content)))
    first, done = _suggestion_moves(settings, s, planned, keep)
    _remove_if_empty(settings, gone)
    return Done(f"merged {gone} into {keep}: {len(done)} files moved", first)


def _merged_content(
    settings: DashboardSettings, path: str, stored: image_rows.ImageInfo | None
) -> tuple[str, ...]:
    """The content a merge may move from `path`: the image the store knows there; an
    image the store does not know yet was never reviewed, so the merge waits for it; a
    file that is no image (notes, a thumbnail cache) goes along as it is now."""
    files.plain_source(settings.root, path)  # a link is refused as a link, first
    if stored is not None:
        if not stored.hash:
            raise FileActionRefused(f"{path} has no content hash yet: rescan first")
        return (stored.hash,)
    name = path.rsplit("/", 1)[-1]
    if os.path.splitext(name)[1].lower() in settings.extensions and not name.startswith("."):
        raise FileActionRefused(
            f"{path} is not in the store yet (added since the last scan): nothing moved; "
            "merge again once the daemon has seen it"
        )
    try:
        return (content_hash(files.inside(settings.root, path)),)
    except OSError as exc:
        raise FileActionRefused(f"cannot read {path}: {exc.strerror or exc}") from exc


def _holds_no_file(settings: DashboardSettings, klass: str) -> bool:
    folder = files.inside(settings.root, klass)
    return folder.is_dir() and not any(names for _dir, _dirs, names in os.walk(folder))


def _remove_if_empty(settings: DashboardSettings, klass: str) -> None:
    # An empty class folder breaks training loaders (ImageFolder refuses one); an undo
    # makes it again. A folder that still holds anything (a file that appeared since) stays.
    folder = files.inside(settings.root, klass)
    for dirpath, _dirs, _names in sorted(os.walk(folder), key=lambda w: -len(w[0])):
        try:
            os.rmdir(dirpath)
        except OSError:
            return


def image_of(s: suggestions.Suggestion) -> tuple[str, ...]:
    """The content an image suggestion is about: the only file its decision may move."""
    if not s.hash:
        raise FileActionRefused(f"{s.id}: no content hash is known for its image: rescan first")
    return (s.hash,)


def quarantine_image(
    settings: DashboardSettings, s: suggestions.Suggestion, path: str | None = None
) -> Done:
    """The suggestion's image leaves the data set (kept in the quarantine folder).
    `path`: another file of the same content to take out instead (a duplicate whose
    reviewer keeps the copy the faces called stray)."""
    if s.path is None:
        raise FileActionRefused(f"{s.id}: this suggestion names no one image to quarantine")
    moved = quarantine_files(settings, s, [(path or s.path, image_of(s))])
    src, dst = moved.moves[0].src, moved.moves[0].dst
    return Done(f"removed {src} from the data set → {dst}", moved.first)


def record_suggestion(
    settings: DashboardSettings, s: suggestions.Suggestion, decision: str, target: str | None = None
) -> Done:
    """A decision that moves no file (file actions off, or: different people, skip)."""
    with db.writing(settings) as con:
        _still_there(con, s)
        suggestions.decide(con, s.id, decision, settings.user, utcnow(), target)
    return Done(f"{suggestion_title(s)}: {decision}")


def clear_suggestion(
    settings: DashboardSettings, s: suggestions.Suggestion, only_if: str | None = None
) -> Done:
    """Reopen a suggestion; a decision that moved files is undone with its files. With
    `only_if` (an undo), only while its decision is still that one."""
    now, live = db.read(
        settings, lambda con: (suggestions.get(con, s.id), action_log.suggestion_actions(con, s.id))
    )
    if now is None:
        raise FileActionRefused(f"{s.id} is gone from the store")
    if only_if is not None and now.state != only_if:
        raise FileActionRefused(f"{suggestion_title(s)} is no longer '{only_if}': nothing undone")
    if live:
        return undo(settings, live[-1].id)
    with db.writing(settings) as con:
        suggestions.undo(con, s.id)
    return Done(f"{suggestion_title(s)}: open again")


def suggestion_title(s: suggestions.Suggestion) -> str:
    # Imported here: the cards carry out their decisions through this module.
    from dashboard.cards.registry import card_for

    return card_for(s.kind).title(s)


def pick_face(settings: DashboardSettings, image: image_rows.ImageInfo, face: int) -> Done:
    """Let another detected face stand for the image in its folder (kept by content and
    folder: it survives rescans); the daemon compares the image again with that face."""
    if image.hash is None:
        raise FileActionRefused("this image has no content hash yet: rescan first")
    try:
        with db.writing(settings) as con:
            embeddings.record_face_pick(con, image.hash, image.klass, face, settings.user, utcnow())
    except ValueError as exc:  # no model in the store yet: said, not raised
        raise FileActionRefused(str(exc)) from exc
    return Done(
        f"{image.name}: face {face + 1} stands for it in {image.klass} from the daemon's next run"
    )
