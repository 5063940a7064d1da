"""What the decision buttons do: record a decision, and for moves and removals also move
the file and log it, or undo such a move.

A file action happens inside the store transaction that logs it: the rename runs between
the log insert and the commit, so a failed rename leaves no log entry, and a failed commit
moves the file back. Only the files change; the daemon (or the next scan) sees the move
and updates the store, carrying the file's identity and history along.
"""

from __future__ import annotations

from dataclasses import dataclass

from dashboard import db, files
from dashboard.files import FileActionRefused
from dashboard.settings import DashboardSettings
from store import embeddings, review
from store.review import PairView


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
        review.record_decision(con, h1, h2, decision, settings.user)
    return Done(f"{pair.a.name} / {pair.b.name}: {decision}")


def decide_group(
    settings: DashboardSettings,
    image: review.ImageInfo,
    other_class: str,
    flt: review.PairFilter,
    decision: str,
) -> Done:
    """One decision on every pair (that the filter shows) joining one image to one other
    class: a group photo whose chosen face is a bystander, cleared in one go."""
    with db.writing(settings) as con:
        pairs = review.image_class_hashes(con, flt, image.id, other_class)
        for h1, h2 in pairs:
            review.record_decision(con, h1, h2, decision, settings.user)
    return Done(f"{image.name} / {len(pairs)} images of {other_class}: {decision}")


def clear(settings: DashboardSettings, pair: PairView, only_if: str | None = None) -> Done:
    """Back to unreviewed; with `only_if` (an undo), only while the decision is still that
    one, so an undo never erases a decision someone took since."""
    h1, h2 = _hashes(pair)
    with db.writing(settings) as con:
        cleared = review.clear_decision(con, h1, h2, only_if=only_if)
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
            review.record_decision(con, *hashes, decision, settings.user)
            action_id = review.log_action(con, action, move.src, move.dst, settings.user, hashes)
            files.execute(settings.root, move)
            moved = True
    except BaseException:
        if moved:
            # Logged nothing, so move nothing: put the file back.
            files.execute(settings.root, files.Move(move.dst, move.src))
        raise
    return action_id


def relabel(settings: DashboardSettings, pair: PairView, side: str) -> Done:
    """Same person: move the image on `side` ("a" = left) into the other image's folder."""
    _require_file_actions(settings)
    image, other = (pair.a, pair.b) if side == "a" else (pair.b, pair.a)
    move = files.plan_relabel(settings.root, image.path, other.path.split("/", 1)[0])
    action_id = _act(settings, move, "move", "same", _hashes(pair))
    return Done(f"moved {move.src} → {move.dst}", action_id)


def quarantine(settings: DashboardSettings, pair: PairView, side: str) -> Done:
    """Take the image on `side` out of the data set, into the quarantine folder."""
    _require_file_actions(settings)
    image = pair.a if side == "a" else pair.b
    move = files.plan_quarantine(settings.root, image.path, settings.quarantine)
    action_id = _act(settings, move, "quarantine", "removed", _hashes(pair))
    return Done(f"removed {move.src} from the data set → {move.dst}", action_id)


_DECISION_OF = {"move": "same", "quarantine": "removed"}


def undo(settings: DashboardSettings, action_id: int) -> Done:
    """Move a file back where a logged action took it from, and reopen the pair."""
    _require_file_actions(settings)
    moved = False
    back: files.Move | None = None
    try:
        with db.writing(settings) as con:
            act = review.get_action(con, action_id)
            if act is None:
                raise FileActionRefused(f"there is no action #{action_id}")
            if not act.undoable:
                raise FileActionRefused(
                    f"action #{action_id} ({act.action}) cannot be undone"
                    + (" again: it was undone already" if act.undone_at else "")
                )
            back = files.plan_undo(settings.root, act.src, act.dst)
            review.mark_undone(con, act.id)
            review.log_action(con, "undo", back.src, back.dst, settings.user, undo_of=act.id)
            if act.hash_a and act.hash_b:
                review.clear_decision(con, act.hash_a, act.hash_b, only_if=_DECISION_OF[act.action])
            files.execute(settings.root, back)
            moved = True
    except BaseException:
        if moved and back is not None:
            files.execute(settings.root, files.Move(back.dst, back.src))
        raise
    assert back is not None
    return Done(f"undone #{action_id}: {back.src} → {back.dst}")


def pick_face(settings: DashboardSettings, image: review.ImageInfo, face: int) -> Done:
    """Let another detected face stand for the image in its folder (kept by content and
    folder: it survives rescans); the daemon compares the image again with that face."""
    if image.hash is None:
        raise FileActionRefused("this image has no content hash yet: rescan first")
    with db.writing(settings) as con:
        embeddings.record_face_pick(
            con, image.hash, image.klass, face, settings.user, review.utcnow()
        )
    return Done(
        f"{image.name}: face {face + 1} stands for it in {image.klass} from the daemon's "
        "next run"
    )
