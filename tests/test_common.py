"""daemon/common/: one image decoder, one status file, one way to say figures in words,
shared by the daemon, `facelint status` and the dashboard."""

from __future__ import annotations

import io
import json
import struct
import zlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from daemon.common import humanize
from daemon.common.imaging import ImageReadError, decode, load_rgb
from daemon.common.statusfile import (
    STALE_SECONDS,
    parse_progress,
    read_status_file,
    write_status,
)
from daemon.config import Settings
from dashboard import images
from tests.app_harness import as_read
from tests.conftest import DEV_FACES

MAX_PIXELS = Settings().max_pixels


# -- images ----------------------------------------------------------------------------------


def _grey16_ramp(path: Path) -> Path:
    """A 16-bit grey PNG, 0..65535 left to right: the encoder reads it at mean 127.5."""
    ramp = np.linspace(0, 65535, 256).round().astype(np.uint16)
    Image.fromarray(np.tile(ramp, (64, 1))).save(path)
    return path


def _jpeg_mean(data: bytes) -> float:
    with Image.open(io.BytesIO(data)) as im:
        return float(np.asarray(im.convert("RGB"), dtype=np.float64).mean())


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that claims width×height grey pixels in a few bytes, as a decompression bomb
    does: nothing past the header is ever read when the size is refused."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )
    return path


def test_the_dashboard_shows_a_16_bit_png_as_the_encoder_reads_it(tmp_path):
    path = _grey16_ramp(tmp_path / "grey16.png")
    with Image.open(path) as im:
        assert im.mode.startswith("I")  # really 16-bit, not saved down to 8
    encoded = float(load_rgb(path, MAX_PIXELS).mean())
    assert abs(encoded - 127.5) < 1
    data = path.read_bytes()
    assert abs(_jpeg_mean(images.render(data, None, 256, MAX_PIXELS)) - encoded) <= 1
    # The face crop (no box: the whole image) too.
    assert abs(_jpeg_mean(images.face_crop(data, None, 256, MAX_PIXELS)) - encoded) <= 1


def test_decoding_bytes_is_decoding_the_file():
    for path in sorted(DEV_FACES.glob("*/*"))[:12]:
        if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
            from_file = load_rgb(path, MAX_PIXELS)
            assert np.array_equal(np.asarray(decode(path.read_bytes(), MAX_PIXELS)), from_file)


@pytest.mark.parametrize(
    ("width", "height", "why"),
    [
        (8000, 8000, "over the limit of 60,000,000"),  # our limit (max_pixels)
        (20000, 20000, "decompression bomb refused"),  # Pillow's own, at Image.open
    ],
)
def test_an_image_over_the_pixel_limit_is_refused_not_raised(tmp_path, width, height, why):
    path = _png_header_only(tmp_path / "huge.png", width, height)
    with pytest.raises(ImageReadError, match=why) as refused:
        load_rgb(path, MAX_PIXELS)
    assert refused.value.status == "unreadable"
    with pytest.raises(ImageReadError, match=why):
        images.render(path.read_bytes(), None, 200, MAX_PIXELS)


def _show(root: str, relpath: str) -> None:
    from types import SimpleNamespace

    from dashboard import ui
    from dashboard.settings import parse_args

    settings = parse_args(["--root", root, "--db", f"{root}/store.duckdb"])
    shown = ui.show_image(settings, SimpleNamespace(path=relpath, box=None), 200)
    ui.st.write(f"shown: {shown}")


@pytest.mark.parametrize(("width", "height"), [(8000, 8000), (20000, 20000)])
def test_the_dashboard_says_why_it_cannot_show_a_huge_image(tmp_path, width, height):
    (tmp_path / "Amy").mkdir()
    _png_header_only(tmp_path / "Amy" / "huge.png", width, height)
    at = AppTest.from_function(_show, args=(str(tmp_path), "Amy/huge.png"), default_timeout=30)
    at.run()
    assert not at.exception, at.exception
    assert [as_read(w.value) for w in at.warning] == [
        f"Amy/huge.png: cannot show this image ({_refusal(tmp_path / 'Amy' / 'huge.png')})"
    ]
    assert "shown: False" in [m.value for m in at.markdown]


def _refusal(path: Path) -> str:
    try:
        load_rgb(path, MAX_PIXELS)
    except ImageReadError as exc:
        return exc.message
    raise AssertionError(f"{path} was not refused")


def test_the_dashboard_shows_a_readable_image(tmp_path):
    (tmp_path / "Amy").mkdir()
    _grey16_ramp(tmp_path / "Amy" / "grey16.png")
    at = AppTest.from_function(_show, args=(str(tmp_path), "Amy/grey16.png"), default_timeout=30)
    at.run()
    assert not at.exception and not at.warning
    assert "shown: True" in [m.value for m in at.markdown]


# -- the status file -------------------------------------------------------------------------


def test_the_status_file_round_trips_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "state" / "facelint.duckdb.status.json"
    live = {"state": "idle", "heartbeat": 1000.0, "queue": 3, "name": "Zoë", "at": Path("/x")}
    write_status(path, live)
    assert json.loads(path.read_text(encoding="utf-8")) == live | {"at": "/x"}
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    status = read_status_file(path, now=1004.0)
    assert status.running and status.age == 4.0
    assert status.summary == "daemon running (heartbeat 4 s ago)"
    assert status.fields["name"] == "Zoë"


def test_one_staleness_rule(tmp_path):
    path = tmp_path / "status.json"
    write_status(path, {"state": "idle", "heartbeat": 1000.0})
    assert read_status_file(path, now=1000.0 + STALE_SECONDS - 0.1).running
    stale = read_status_file(path, now=1000.0 + STALE_SECONDS)
    assert not stale.running
    assert stale.summary == f"daemon not running (last heartbeat {STALE_SECONDS:.0f} s ago)"
    # A clock set back a little still counts as running.
    assert read_status_file(path, now=995.0).summary == "daemon running (heartbeat 0 s ago)"


@pytest.mark.parametrize("heartbeat", [None, "1000", True, float("nan"), float("inf"), [1]])
def test_a_heartbeat_that_is_not_a_number_means_not_running(tmp_path, heartbeat):
    path = tmp_path / "status.json"
    path.write_text(json.dumps({"state": "idle", "heartbeat": heartbeat}), encoding="utf-8")
    status = read_status_file(path, now=1000.0)
    assert not status.running and status.age is None
    assert status.summary == "daemon not running (status file has no heartbeat)"
    assert status.fields["state"] == "idle"


@pytest.mark.parametrize(
    ("content", "summary"),
    [
        (None, "daemon not running (no status file at"),
        (b"{not json", "daemon status unreadable ("),
        (b"[1, 2]", "daemon status unreadable ("),
        (b'{"heartbeat": 1000, "state": "\xff\xfe"}', "daemon status unreadable ("),
    ],
)
def test_an_unreadable_status_file_is_a_summary_not_an_error(tmp_path, content, summary):
    path = tmp_path / "status.json"
    if content is not None:
        path.write_bytes(content)
    status = read_status_file(path, now=1000.0)
    assert not status.running and status.summary.startswith(summary) and status.fields == {}


def test_facelint_status_and_the_dashboard_agree_on_running(tmp_path):
    from daemon.status import read_status

    settings = Settings(db=tmp_path / "facelint.duckdb")
    write_status(settings.status_path(), {"state": "encoding", "heartbeat": 1000.0, "queue": 5})
    for now in (1000.0, 1059.9, 1060.0, 1500.0):
        cli = read_status(settings, now=now)
        dashboard = read_status_file(settings.status_path(), now=now)
        assert cli["running"] == dashboard.running == (now - 1000.0 < STALE_SECONDS)
        assert cli["state"] == ("encoding" if dashboard.running else "daemon not running")
        assert cli["queue"] == (5 if dashboard.running else 0)
        assert cli["heartbeat_age"] == round(now - 1000.0, 1)


def test_progress_is_read_one_way():
    assert parse_progress({"stage": "encoding", "done": 3, "total": 9, "eta_s": 12.5}) == (
        parse_progress({"stage": "encoding", "done": "3", "total": 9.0, "eta_s": "12.5"})
    )
    p = parse_progress({"stage": "encoding", "done": 3, "total": 9, "eta_s": 12.5})
    assert p is not None and (p.stage, p.done, p.total, p.eta_s) == ("encoding", 3, 9, 12.5)
    assert parse_progress({"done": 1, "total": 2}).stage == "working"
    assert parse_progress({"done": 1, "total": 2, "eta_s": -3}).eta_s is None
    for bad in (None, [], {"done": "x", "total": 5}, {"done": 0, "total": 0}, {"stage": "a"}):
        assert parse_progress(bad) is None


def test_progress_counts_only_while_the_daemon_runs(tmp_path):
    path = tmp_path / "status.json"
    write_status(path, {"heartbeat": 1000.0, "progress": {"stage": "s", "done": 1, "total": 4}})
    assert read_status_file(path, now=1001.0).progress() is not None
    assert read_status_file(path, now=2000.0).progress() is None


# -- figures in words ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "0 s"),
        (0.4, "0 s"),
        (4, "4 s"),
        (89.4, "89 s"),
        (90, "2 min"),
        (125, "2 min"),
        (89 * 60, "89 min"),
        (90 * 60, "1.5 h"),
        (7200, "2.0 h"),
        (36 * 3600 - 1, "36.0 h"),
        (36 * 3600, "1.5 days"),
        (10 * 86400, "10.0 days"),
    ],
)
def test_duration(seconds, text):
    assert humanize.duration(seconds) == text


def test_age_of_a_number_and_of_iso_text():
    now = 1_000_000.0
    assert humanize.age(now - 4, now) == "4 s ago"
    assert humanize.age(now - 7200, now) == "2.0 h ago"
    iso = datetime.fromtimestamp(now - 180, UTC).isoformat(timespec="seconds")
    assert humanize.age(iso, now) == "3 min ago"
    # Without a zone it is UTC, as every time the store holds.
    assert humanize.age(iso.removesuffix("+00:00"), now) == "3 min ago"
    for nothing in (None, "", "soon", True, float("nan")):
        assert humanize.age(nothing, now) == "never"


def test_moment():
    assert humanize.moment(0) == "1970-01-01 00:00:00 UTC"
    assert humanize.moment("2024-05-01T10:00:00+00:00") == "2024-05-01 10:00:00 UTC"
    assert humanize.moment("2024-05-01T12:00:00+02:00") == "2024-05-01 10:00:00 UTC"
    assert humanize.moment(None) == humanize.moment("") == "—"
    assert humanize.moment("yesterday") == "yesterday"
    assert humanize.moment(1e300) == str(1e300)


def test_count():
    assert humanize.count(12345) == "12,345"
    assert humanize.count(None) == humanize.count(None, "image") == "—"
    assert humanize.count("n/a") == "n/a"
    assert humanize.count(0, "image") == "0 images"
    assert humanize.count(1, "image") == "1 image"
    assert humanize.count(2, "image") == "2 images"
    assert humanize.count(1, "match", "matches") == "1 match"
    assert humanize.count(1200, "match", "matches") == "1,200 matches"


def test_rate_and_time_left():
    assert humanize.rate(12.345) == "12.3 images/s"
    assert humanize.rate("3.5", "faces") == "3.5 faces/s"
    assert humanize.rate(None) == humanize.rate("fast") == "—"
    assert humanize.time_left(125) == "about 2 min left"
    # Never "0 s" while work remains.
    assert humanize.time_left(0) == humanize.time_left(0.3) == "about 1 s left"
    assert humanize.progress("encoding", 1234, 5000, 120) == (
        "encoding 1,234 of 5,000, about 2 min left"
    )
    assert humanize.progress("comparing", 1, 2, None) == "comparing 1 of 2"


def test_rate_and_eta():
    assert humanize.rate_and_eta(30, 90, 10.0) == (3.0, 20.0)
    assert humanize.rate_and_eta(0, 90, 10.0) == (0.0, None)
    assert humanize.rate_and_eta(5, 90, 0.0) == (0.0, None)
    rate, left = humanize.rate_and_eta(90, 90, 4.0)
    assert rate == 22.5 and left == 0.0


def test_facelint_status_says_when_the_last_reconcile_was():
    from daemon.cli import human_status

    now = 1_000_000.0
    rows = dict(
        human_status(
            {
                "heartbeat": now - 2,
                # As the daemon writes it (service.py): ISO text, not a number.
                "last_reconcile": datetime.fromtimestamp(now - 600, UTC).isoformat(),
                "progress": {"stage": "encoding", "done": "x", "total": 10},
            },
            now,
        )
    )
    assert rows["last reconcile"] == "10 min ago"
    assert "progress" not in rows  # malformed: left out, as the dashboard does
    assert rows["throughput"] == "—" and rows["images"] == "—"


def test_the_service_publishes_rate_and_time_left(tmp_path):
    from daemon.pipeline import ProgressEvent
    from daemon.service import Service

    now = [100.0]
    (tmp_path / "data").mkdir()
    settings = Settings(root=tmp_path / "data", db=tmp_path / "facelint.duckdb")
    service = Service(settings, clock=lambda: now[0])
    try:
        service._progress(ProgressEvent("encoding", 0, 90))
        assert service.progress is not None and service.progress["eta_s"] is None
        now[0] += 10.0
        service._progress(ProgressEvent("encoding", 30, 90))
        assert service.progress == {
            "stage": "encoding",
            "done": 30,
            "total": 90,
            "rate": 3.0,
            "eta_s": 20.0,
        }
        service.publish()
        status = read_status_file(settings.status_path())
        assert status.running and status.progress() == parse_progress(service.progress)
    finally:
        service.pipeline.close()


def test_the_progress_log_line_says_rate_and_time_left(caplog, monkeypatch):
    from daemon import progress as terminal
    from daemon.pipeline import ProgressEvent

    ticks = [50.0, 50.0, 60.0]  # stage start, first event, second event
    monkeypatch.setattr(terminal.time, "monotonic", lambda: ticks.pop(0) if ticks[1:] else ticks[0])
    out = terminal.TerminalProgress(stream=io.StringIO(), every=5.0)
    with caplog.at_level("INFO", logger="facelint.progress"):
        out(ProgressEvent("encoding", 0, 900))
        out(ProgressEvent("encoding", 300, 900))
    assert [r.getMessage() for r in caplog.records] == [
        "encoding 0/900 (0.0/s, time left unknown)",
        "encoding 300/900 (30.0/s, about 20 s left)",
    ]
