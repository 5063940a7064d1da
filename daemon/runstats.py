"""What a run reports: progress while it works (`ProgressEvent`) and figures when it ends
(`RunStats`), for whoever renders them (a terminal bar, the daemon's status file, `scan
--json`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class ProgressEvent:
    """`stage` with `done` of `total` items."""

    stage: str  # encoding | comparing | suggesting
    done: int
    total: int


@dataclass
class RunStats:
    kind: str = "scan"
    images: int = 0
    scanned: int = 0
    new: int = 0
    moved: int = 0
    changed: int = 0
    touched: int = 0
    removed: int = 0
    encoded: int = 0
    reused: int = 0
    failed: int = 0
    no_face: int = 0
    pairs: int = 0
    pairs_removed: int = 0
    suggestions: int = 0
    encoded_total: int = 0  # every encode the store has recorded, across runs
    full_compare: bool = False
    compared: int = 0
    calibration: dict[str, Any] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    encode_seconds: float = 0.0
    read_seconds: float = 0.0
    compute_seconds: float = 0.0
    suggest_seconds: float = 0.0
    # From the run's start until its pairs were committed (queryable), and its encodes.
    queryable_seconds: float = 0.0
    write_seconds: float = 0.0
    seconds: float = 0.0
    # False when the run found nothing to do and wrote nothing.
    wrote: bool = True

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["skipped"] = [{"path": p, "reason": r} for p, r in self.skipped]
        out["failures"] = [{"path": p, "status": s, "message": m} for p, s, m in self.failures]
        return out
