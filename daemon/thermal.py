"""Thermal back-off: pause encoding while the machine is hot, with hysteresis.

Encoding keeps every core busy for hours; on small fanless boxes and laptops that drives
the CPU into its own throttling (or shutdown). Pausing above a limit and resuming only
below a lower mark avoids flapping on and off around a single threshold.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("facelint.thermal")

TemperatureSource = Callable[[], float | None]

# Chips that measure the CPU package or die; other chips (NVMe, Wi-Fi, battery) run at
# their own temperatures and would pause work for the wrong reason.
CPU_CHIPS: tuple[str, ...] = ("coretemp", "k10temp", "cpu_thermal", "zenpower", "acpitz")

# Some sensors report junk (0 for an unconnected input, 65261.85 from certain NVMe
# drives); a junk maximum would pause the daemon forever.
_PLAUSIBLE_MIN_C = 0.0
_PLAUSIBLE_MAX_C = 150.0

# A value of 200 or more in a sensor file cannot be degrees: it is millidegrees, the unit
# of /sys/class/thermal/*/temp and hwmon's temp*_input.
_MILLIDEGREE_THRESHOLD = 200.0

# Readings lost in a row before a throttle is released: a sensor that stopped answering
# must not keep the daemon paused for ever.
_MAX_MISSED_READINGS = 3


def _plausible(value: Any) -> float | None:
    try:
        reading = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(reading) or not _PLAUSIBLE_MIN_C < reading < _PLAUSIBLE_MAX_C:
        return None
    return reading


def _max_current(entries: Iterable[Any]) -> float | None:
    readings = [
        r for r in (_plausible(getattr(e, "current", None)) for e in entries) if r is not None
    ]
    return max(readings) if readings else None


def _read_psutil() -> dict[str, list[Any]] | None:
    import psutil  # deferred: importing this module must not cost anything

    reader = getattr(psutil, "sensors_temperatures", None)
    if reader is None:  # macOS and Windows builds of psutil lack it
        return None
    try:
        return reader()
    except Exception as exc:  # psutil raises assorted errors on odd hwmon drivers
        log.debug("psutil.sensors_temperatures() failed: %s", exc)
        return None


def _psutil_has_sensors() -> bool:
    import psutil

    return hasattr(psutil, "sensors_temperatures")


def _auto_reading() -> float | None:
    chips = _read_psutil()
    if not chips:
        return None
    cpu = [entry for name in CPU_CHIPS for entry in chips.get(name, [])]
    reading = _max_current(cpu)
    if reading is not None:
        return reading
    return _max_current(entry for entries in chips.values() for entry in entries)


def _named_reading(name: str) -> float | None:
    chips = _read_psutil()
    if not chips:
        return None
    wanted = name.strip().lower()
    # "chip:label" picks one input of one chip, for machines with two chips of a name.
    chip_part, _, label_part = wanted.partition(":")
    if label_part:
        entries = [
            entry
            for chip, items in chips.items()
            if chip.lower() == chip_part
            for entry in items
            if (entry.label or "").lower() == label_part
        ]
        return _max_current(entries)
    by_chip = [e for chip, items in chips.items() if chip.lower() == wanted for e in items]
    if by_chip:
        return _max_current(by_chip)
    by_label = [
        entry
        for items in chips.values()
        for entry in items
        if (entry.label or "").lower() == wanted
    ]
    return _max_current(by_label)


def _file_reading(path: str) -> float | None:
    try:
        with open(path, encoding="ascii") as fh:
            value = float(fh.read().strip())
    except (OSError, ValueError, UnicodeDecodeError):
        # Thermal zones return EIO or ENODATA while the sensor is asleep; that is a
        # missing reading, not an error worth stopping for.
        return None
    if abs(value) >= _MILLIDEGREE_THRESHOLD:
        value /= 1000.0
    return _plausible(value)


def _no_reading() -> float | None:
    return None


def make_temperature_source(sensor: str) -> TemperatureSource:
    """A callable returning the current temperature in °C, or None when unknown.

    ``sensor`` is "" for the hottest CPU sensor psutil knows, a path to a file holding
    millidegrees (``/sys/class/thermal/thermal_zone0/temp``) or degrees, or a psutil chip
    name, label, or ``chip:label``. Machines without sensors get a source that always
    returns None, which the governor reads as "do not throttle".
    """
    sensor = sensor.strip()
    if sensor and os.path.isfile(sensor):
        return lambda: _file_reading(sensor)
    if sensor and os.sep in sensor:
        # It looks like a path: reading it as a chip name would silently never match.
        log.warning("temperature sensor file %s does not exist", sensor)
        return lambda: _file_reading(sensor)
    if not _psutil_has_sensors():
        return _no_reading
    if not sensor:
        return _auto_reading
    return lambda: _named_reading(sensor)


class ThermalGovernor:
    """Decides whether work should pause, from a temperature source.

    Enters the throttled state when a reading is above ``limit`` and leaves it only when a
    reading is below ``resume``. If the very first reading is None there is no sensor
    (VMs, CI): it says so once and never throttles.
    """

    def __init__(
        self,
        source: TemperatureSource,
        limit: float = 72.0,
        resume: float = 65.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not resume < limit:
            raise ValueError(
                f"thermal resume temperature ({resume} °C) must be below the limit "
                f"({limit} °C), or the daemon would resume while still too hot"
            )
        self.source = source
        self.limit = float(limit)
        self.resume = float(resume)
        self._clock = clock
        self._throttled = False
        self._throttled_since: float | None = None
        self._last_reading: float | None = None
        self._sensor_available: bool | None = None
        self._missed = 0

    @property
    def throttled(self) -> bool:
        """True while work should pause."""
        return self._throttled

    @property
    def last_reading(self) -> float | None:
        """The latest successful reading in °C; None until there is one.

        A lost reading keeps the previous value, so a throttled state always comes with
        a temperature to show.
        """
        return self._last_reading

    @property
    def sensor_available(self) -> bool | None:
        """Whether a sensor answered the first check; None until then."""
        return self._sensor_available

    @property
    def throttled_seconds(self) -> float:
        """How long the current pause has lasted; 0 when not throttled."""
        if self._throttled_since is None:
            return 0.0
        return max(0.0, self._clock() - self._throttled_since)

    def check(self) -> bool:
        """Read the temperature once, update the state, and return ``throttled``."""
        if self._sensor_available is False:
            return False
        reading = self._read()
        if self._sensor_available is None:
            self._sensor_available = reading is not None
            if reading is None:
                log.info("no temperature sensor: not throttling")
                return False
        if reading is None:
            self._missed += 1
            if self._throttled and self._missed >= _MAX_MISSED_READINGS:
                log.warning(
                    "temperature sensor stopped answering (%d readings): resuming work",
                    self._missed,
                )
                self._leave()
            return self._throttled
        self._missed = 0
        self._last_reading = reading
        if not self._throttled and reading > self.limit:
            self._throttled = True
            self._throttled_since = self._clock()
            log.warning(
                "temperature %.1f °C is above %.1f °C: pausing work until below %.1f °C",
                reading,
                self.limit,
                self.resume,
            )
        elif self._throttled and reading < self.resume:
            log.info(
                "temperature %.1f °C is below %.1f °C: resuming work after %.0f s",
                reading,
                self.resume,
                self.throttled_seconds,
            )
            self._leave()
        return self._throttled

    def _leave(self) -> None:
        self._throttled = False
        self._throttled_since = None
        self._missed = 0

    def _read(self) -> float | None:
        try:
            value = self.source()
        except Exception as exc:  # an injected source must not take the daemon down
            log.debug("temperature source failed: %s", exc)
            return None
        if value is None:
            return None
        try:
            reading = float(value)
        except (TypeError, ValueError):
            return None
        return reading if math.isfinite(reading) else None
