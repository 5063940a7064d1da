"""Thermal back-off: sources, hysteresis, waiting, and machines without sensors."""

from __future__ import annotations

import logging
from collections import namedtuple
from collections.abc import Iterable
from pathlib import Path

import psutil
import pytest

from daemon import thermal
from daemon.thermal import ThermalGovernor, make_temperature_source

# Same shape as psutil's own named tuple.
shwtemp = namedtuple("shwtemp", ["label", "current", "high", "critical"])


class FakeTime:
    """A clock that only moves when a test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now


class Readings:
    """A source returning the given readings in turn, then repeating the last one."""

    def __init__(self, values: Iterable[float | None]) -> None:
        self.values = list(values)
        self.calls = 0

    def __call__(self) -> float | None:
        value = self.values[min(self.calls, len(self.values) - 1)]
        self.calls += 1
        return value


def governor(
    values: Iterable[float | None], **kwargs: float
) -> tuple[ThermalGovernor, Readings, FakeTime]:
    source = Readings(values)
    fake = FakeTime()
    gov = ThermalGovernor(source, clock=fake.clock, **kwargs)
    return gov, source, fake


# --- hysteresis -------------------------------------------------------------------------


def test_hysteresis_above_limit_throttles_and_only_below_resume_releases():
    gov, _, _ = governor([60.0, 73.0, 70.0, 66.0, 64.0, 70.0])
    assert gov.check() is False  # 60: cool
    assert gov.check() is True  # 73 > 72: throttled
    assert gov.throttled and gov.last_reading == 73.0
    assert gov.check() is True  # 70: below the limit, but not below resume
    assert gov.check() is True  # 66: still not below 65
    assert gov.check() is False  # 64 < 65: resumes
    assert gov.check() is False  # 70 again: under the limit, stays running
    assert gov.last_reading == 70.0


def test_limits_are_strict_comparisons():
    gov, _, _ = governor([72.0, 72.1, 65.0, 64.9])
    assert gov.check() is False  # exactly at the limit is not above it
    assert gov.check() is True
    assert gov.check() is True  # exactly at resume is not below it
    assert gov.check() is False


def test_custom_marks():
    gov, _, _ = governor([81.0, 76.0, 74.0], limit=80.0, resume=75.0)
    assert [gov.check(), gov.check(), gov.check()] == [True, True, False]


def test_transitions_are_logged_with_the_temperature(caplog):
    gov, _, fake = governor([75.0, 70.0, 60.0])
    with caplog.at_level(logging.INFO, logger="facelint.thermal"):
        gov.check()
        fake.now += 42
        gov.check()
        gov.check()
    records = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert len(records) == 2  # one per transition, nothing for "still throttled"
    assert records[0][0] == logging.WARNING and "75.0 °C" in records[0][1]
    assert records[1][0] == logging.INFO and "60.0 °C" in records[1][1]
    assert "42 s" in records[1][1]


def test_throttled_seconds_uses_the_injected_clock():
    gov, _, fake = governor([80.0, 80.0, 50.0])
    assert gov.throttled_seconds == 0.0
    gov.check()
    fake.now += 30
    gov.check()
    assert gov.throttled_seconds == pytest.approx(30.0)
    gov.check()
    assert gov.throttled_seconds == 0.0


@pytest.mark.parametrize(("limit", "resume"), [(72.0, 72.0), (65.0, 72.0)])
def test_resume_must_be_below_limit(limit, resume):
    with pytest.raises(ValueError, match="must be below the limit"):
        ThermalGovernor(Readings([50.0]), limit=limit, resume=resume)


# --- no sensor --------------------------------------------------------------------------


def test_no_sensor_never_throttles_and_says_so_once(caplog):
    gov, source, _ = governor([None, 99.0, 99.0])
    with caplog.at_level(logging.INFO, logger="facelint.thermal"):
        assert gov.sensor_available is None
        for _ in range(5):
            assert gov.check() is False
    assert gov.sensor_available is False
    assert not gov.throttled
    assert source.calls == 1  # decided on the first reading, not asked again
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["no temperature sensor: not throttling"]


def test_sensor_available_after_a_first_reading():
    gov, _, _ = governor([50.0])
    gov.check()
    assert gov.sensor_available is True


def test_a_failing_source_counts_as_no_reading():
    def broken() -> float | None:
        raise OSError("EIO")

    gov = ThermalGovernor(broken)
    assert gov.check() is False
    assert gov.sensor_available is False


def test_missed_readings_while_throttled_release_after_a_few(caplog):
    gov, _, _ = governor([80.0, None, None, None])
    assert gov.check() is True
    assert gov.check() is True  # one lost reading does not end a pause
    assert gov.last_reading == 80.0  # and the pause still has a temperature to show
    assert gov.check() is True
    with caplog.at_level(logging.WARNING, logger="facelint.thermal"):
        assert gov.check() is False  # a sensor that went away must not pause for ever
    assert "stopped answering" in caplog.text


# --- sources ----------------------------------------------------------------------------


def test_sensor_file_in_millidegrees(tmp_path: Path):
    zone = tmp_path / "temp"
    zone.write_text("73500\n")
    source = make_temperature_source(str(zone))
    assert source() == pytest.approx(73.5)
    zone.write_text("64000\n")
    assert source() == pytest.approx(64.0)


def test_sensor_file_in_plain_degrees(tmp_path: Path):
    zone = tmp_path / "temp"
    zone.write_text("68.5")
    assert make_temperature_source(str(zone))() == pytest.approx(68.5)


def test_sensor_file_unreadable_or_garbage_gives_none(tmp_path: Path):
    zone = tmp_path / "temp"
    zone.write_text("n/a")
    source = make_temperature_source(str(zone))
    assert source() is None
    zone.unlink()
    assert source() is None


def test_sensor_file_drives_the_governor(tmp_path: Path):
    zone = tmp_path / "temp"
    zone.write_text("80000")
    gov = ThermalGovernor(make_temperature_source(str(zone)))
    assert gov.check() is True
    zone.write_text("70000")
    assert gov.check() is True
    zone.write_text("60000")
    assert gov.check() is False


def test_missing_sensor_path_warns(tmp_path: Path, caplog):
    with caplog.at_level(logging.WARNING, logger="facelint.thermal"):
        source = make_temperature_source(str(tmp_path / "nope" / "temp"))
    assert source() is None
    assert "does not exist" in caplog.text


SENSORS = {
    "coretemp": [
        shwtemp("Package id 0", 61.0, 80.0, 100.0),
        shwtemp("Core 0", 58.0, 80.0, 100.0),
        shwtemp("Core 1", 63.0, 80.0, 100.0),
    ],
    "nvme": [
        shwtemp("Composite", 45.0, 80.0, 90.0),
        shwtemp("Sensor 2", 65261.85, None, None),  # real junk some drives report
    ],
    "iwlwifi_1": [shwtemp("", 90.0, None, None)],
}


def _fake_psutil(monkeypatch, sensors: dict) -> None:
    monkeypatch.setattr(psutil, "sensors_temperatures", lambda: sensors, raising=False)


def test_auto_source_takes_the_hottest_cpu_chip(monkeypatch):
    _fake_psutil(monkeypatch, SENSORS)
    # Wi-Fi at 90 °C is not the CPU: it must not pause encoding.
    assert make_temperature_source("")() == pytest.approx(63.0)


def test_auto_source_falls_back_to_all_chips_without_junk(monkeypatch):
    _fake_psutil(monkeypatch, {"nvme": SENSORS["nvme"], "board": [shwtemp("", 0.0, None, None)]})
    assert make_temperature_source("")() == pytest.approx(45.0)


def test_auto_source_on_other_cpu_chips(monkeypatch):
    others = {"nvme": SENSORS["nvme"], "iwlwifi_1": SENSORS["iwlwifi_1"]}
    for chip in thermal.CPU_CHIPS:
        _fake_psutil(monkeypatch, {chip: [shwtemp("Tctl", 55.5, None, None)], **others})
        assert make_temperature_source("")() == pytest.approx(55.5), chip


def test_named_chip_label_and_chip_label(monkeypatch):
    _fake_psutil(monkeypatch, SENSORS)
    assert make_temperature_source("nvme")() == pytest.approx(45.0)
    assert make_temperature_source("Package id 0")() == pytest.approx(61.0)
    assert make_temperature_source("coretemp:Core 0")() == pytest.approx(58.0)
    assert make_temperature_source("CoreTemp")() == pytest.approx(63.0)
    assert make_temperature_source("no-such-chip")() is None


def test_vm_without_sensors_yields_none(monkeypatch):
    _fake_psutil(monkeypatch, {})
    assert make_temperature_source("")() is None
    assert make_temperature_source("coretemp")() is None


def test_psutil_without_sensors_temperatures_yields_none(monkeypatch):
    # psutil on macOS and Windows has no sensors_temperatures at all.
    monkeypatch.delattr(psutil, "sensors_temperatures", raising=False)
    assert make_temperature_source("")() is None
    assert make_temperature_source("coretemp")() is None


def test_psutil_raising_yields_none(monkeypatch):
    def boom() -> dict:
        raise RuntimeError("odd hwmon driver")

    monkeypatch.setattr(psutil, "sensors_temperatures", boom, raising=False)
    assert make_temperature_source("")() is None


def test_real_machine_source_does_not_raise():
    # On CI and VMs this is None; on hardware, a plausible temperature.
    reading = make_temperature_source("")()
    assert reading is None or 0.0 < reading < 150.0
