"""The `facelint` command."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from daemon.config import (
    CONFIG_FILE,
    ENV_PREFIX,
    ConfigError,
    Settings,
    flag_help,
    load_settings,
    setting_flag,
)
from daemon.launch import LOG_FORMAT

log = logging.getLogger("facelint")


# A flag that sets a setting has the setting's name as its dest, defaults to None (unset:
# the file, the environment or the model's default holds) and takes its help, choices and
# shown default from the model (config.setting_flag); settings_from copies every one given.


def _common(p: argparse.ArgumentParser, root: bool = False) -> None:
    if root:
        p.add_argument("root", nargs="?", help=flag_help("root"))
        p.add_argument("--root", dest="root_opt", help=argparse.SUPPRESS)
    p.add_argument("--db", **setting_flag("db"))
    p.add_argument(
        "--config",
        type=Path,
        help=f"TOML settings file (default: {CONFIG_FILE}, or ${ENV_PREFIX}CONFIG)",
    )


def _allow_empty(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-empty", **setting_flag("allow_empty"))


def _encoding(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", **setting_flag("workers"))
    p.add_argument("--backend", **setting_flag("backend"))
    p.add_argument("--model", **setting_flag("model"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facelint",
        description="Find the same person filed under two names in a face data set.",
        epilog=f"Settings: the defaults < {CONFIG_FILE} (or ${ENV_PREFIX}CONFIG) < "
        f"{ENV_PREFIX}<NAME> environment < flags; `facelint COMMAND --help` shows each "
        "flag's default, README's Configuration every setting.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    parser.add_argument("--version", action="version", version=f"facelint {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("scan", help="bring the store up to date with the data folder, once")
    _common(p, root=True)
    p.add_argument("--threshold", **setting_flag("threshold"))
    p.add_argument("--max-pairs", **setting_flag("max_pairs_per_image"))
    p.add_argument("--jitters", **setting_flag("num_jitters"))
    _encoding(p)
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    _allow_empty(p)

    p = sub.add_parser("top", help="the best unreviewed pairs")
    _common(p)
    p.add_argument("-n", type=int, default=20, help="how many (default 20)")
    p.add_argument(
        "--format", choices=["table", "csv", "json"], default="table", help="output format"
    )
    p.add_argument("--all", action="store_true", help="include reviewed pairs")

    p = sub.add_parser(
        "export", help="write every pair as CSV (path_a,path_b,score), or a backup of the review"
    )
    _common(p)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--csv", type=Path, help="pairs to this file ('-' for stdout)")
    what.add_argument(
        "--decisions",
        type=Path,
        help="a backup of the review to this file ('-' for stdout): pair and suggestion "
        "decisions, face picks, the file actions' log; a store rebuilt from the files cannot "
        "rebuild them (`facelint import --decisions FILE` restores it)",
    )

    p = sub.add_parser("import", help="restore a backup of the review into the store")
    _common(p)
    p.add_argument(
        "--decisions",
        type=Path,
        required=True,
        help="the backup `facelint export --decisions` wrote ('-' for stdin)",
    )

    p = sub.add_parser(
        "sql", help="a SQL query against the store (read-only unless --write), and nothing else"
    )
    _common(p)
    p.add_argument("query", help='the query, e.g. "SELECT * FROM pairs LIMIT 5"')
    p.add_argument(
        "--format", choices=["table", "csv", "json"], default="table", help="output format"
    )
    p.add_argument("--write", action="store_true", help="open read-write (for fixes)")

    p = sub.add_parser("status", help="the daemon's state and the store's totals")
    _common(p)
    p.add_argument("--json", action="store_true", help="raw values as one JSON object")

    p = sub.add_parser("search", help="the stored faces nearest to the face in a photo")
    _common(p)
    p.add_argument("photo", type=Path, help="a photo with the face to look for")
    p.add_argument("-n", type=int, default=10, help="how many faces to list (default 10)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("daemon", help="watch the data folder and keep the store up to date")
    _common(p, root=True)
    p.add_argument("--poll", **setting_flag("poll"))
    _encoding(p)
    _allow_empty(p)

    p = sub.add_parser("dashboard", help="the review dashboard (Streamlit)")
    _common(p)
    p.add_argument("--root", **setting_flag("root"))
    _dashboard_flags(p)

    p = sub.add_parser("up", help="scan, then run the daemon with the dashboard beside it")
    _common(p, root=True)
    _dashboard_flags(p)
    _allow_empty(p)
    return parser


def _dashboard_flags(p: argparse.ArgumentParser) -> None:
    # `dashboard` and `up` take the same ones: launch.dashboard_command hands the dashboard
    # every resolved setting, however it was set.
    p.add_argument("--port", **setting_flag("port"))
    p.add_argument("--address", **setting_flag("address"))
    p.add_argument("--allow-file-actions", **setting_flag("allow_file_actions"))
    p.add_argument("--quarantine", **setting_flag("quarantine"))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("facelint")
    except PackageNotFoundError:
        return "unknown (not installed)"


def settings_from(args: argparse.Namespace) -> Settings:
    """The settings of this command: load_settings, then the flags given."""
    base = load_settings(getattr(args, "config", None))
    values: dict[str, Any] = {
        name: getattr(args, name)
        for name in Settings.model_fields
        if getattr(args, name, None) is not None
    }
    root = getattr(args, "root", None) or getattr(args, "root_opt", None)
    if root is not None:
        values["root"] = root
    return base.with_overrides(**values)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Whatever the terminal's encoding (a C locale, PYTHONIOENCODING=ascii), output is
    # never a crash: what the stream cannot encode is backslash-escaped. Names that are
    # not UTF-8 were made printable before (inventory.printable), the same way.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format=LOG_FORMAT,
        stream=sys.stderr,
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    try:
        settings = settings_from(args)
        if args.command in ("scan", "daemon", "up"):
            _check_root(settings, args)
        handler = _COMMANDS[args.command]
        return handler(settings, args)
    except ConfigError as exc:
        print(f"facelint: configuration error: {exc}", file=sys.stderr)
        return 2
    except RootMissing as exc:
        print(f"facelint: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `facelint top | head`: the reader left; say nothing more (not even at exit).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        from store.connection import StoreBusy, StoreMissing

        if isinstance(exc, StoreBusy | StoreMissing):
            print(f"facelint: {exc}", file=sys.stderr)
            return 3
        from daemon.inventory import EmptyRoot
        from daemon.service import DaemonRunning

        if isinstance(exc, DaemonRunning):
            print(f"facelint: {exc}", file=sys.stderr)
            return 5
        if isinstance(exc, EmptyRoot):
            print(f"facelint: {exc}", file=sys.stderr)
            return 6
        import duckdb

        if isinstance(exc, duckdb.Error):
            # The message may quote stored values (a file name in a conversion error).
            print(f"facelint: query failed: {terminal_safe(str(exc))}", file=sys.stderr)
            return 4
        raise


class RootMissing(FileNotFoundError):
    """A data folder named explicitly does not exist."""


def _check_root(s: Settings, args: argparse.Namespace) -> None:
    """A root named explicitly (argument, --root, config file, FACELINT_ROOT) must exist: a
    typo must neither create an empty folder nor empty the store. The default `data/` is
    created when missing, as the README's first command promises."""
    named = getattr(args, "root", None) or getattr(args, "root_opt", None)
    explicit = named is not None or s.root != Settings().root
    if explicit and not s.root.is_dir():
        what = "is not a folder" if s.root.exists() else "does not exist"
        raise RootMissing(
            f"data folder {s.root} {what}: check the path (facelint creates only the "
            f"default {Settings().root}/)"
        )


def cmd_scan(s: Settings, args: argparse.Namespace) -> int:
    from daemon.pipeline import Pipeline
    from daemon.progress import TerminalProgress

    progress = TerminalProgress()
    pipeline = Pipeline(s, on_progress=progress, on_wait=_wait_reporter(s, write=True))
    try:
        stats = pipeline.run()
    finally:
        progress.close()
        pipeline.close()
    if args.json:
        print(json.dumps(stats.as_dict(), ensure_ascii=False, default=str))
        return 0
    print(
        f"{stats.images} images in {s.root}: {stats.encoded} encoded, {stats.reused} reused, "
        f"{stats.moved} moved, {stats.removed} removed, {stats.failed} failed, "
        f"{stats.no_face} without a face; {stats.pairs} pairs and {stats.suggestions} "
        f"suggestions in {s.db} "
        f"({'full' if stats.full_compare else 'incremental'} compare, {stats.seconds:.1f} s)"
    )
    for path, status, message in stats.failures:
        print(terminal_safe(f"  {status}: {path}: {message}"))
    for path, why in stats.skipped:
        print(terminal_safe(f"  skipped: {path}: {why}"))
    return 0


def _emit(columns: Sequence[str], rows: Sequence[Sequence[Any]] | Any, fmt: str) -> None:
    out = sys.stdout
    if fmt == "json":
        out.write(
            json.dumps(
                [dict(zip(columns, r, strict=True)) for r in rows],
                ensure_ascii=False,
                default=str,
                indent=1,
            )
            + "\n"
        )
    elif fmt == "csv":
        from store.queries.reports import csv_writer

        w = csv_writer(out)
        w.writerow(columns)
        w.writerows(rows)
    else:
        columns = [terminal_safe(c) for c in columns]
        rows = [[_cell(v) for v in r] for r in rows]
        widths = [max([len(c)] + [_width(r[i]) for r in rows]) for i, c in enumerate(columns)]
        out.write("  ".join(_pad(c, w) for c, w in zip(columns, widths, strict=True)) + "\n")
        for r in rows:
            out.write("  ".join(_pad(v, w) for v, w in zip(r, widths, strict=True)) + "\n")


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return "" if v is None else terminal_safe(str(v))


# Characters a terminal obeys rather than shows: C0 and C1 controls (ESC starts the
# sequences that clear a screen or rewrite a line; \r returns to the line's start) and
# the bidirectional overrides that reorder what follows.
_OBEYED = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def terminal_safe(text: str) -> str:
    """Text for a terminal, shown and never obeyed: each character a terminal would act
    on as Python's escape of it (`\\x1b`, `\\r`, `\\u202e`), like inventory.printable
    shows a byte that is not UTF-8. Every table cell and status line the CLI prints
    passes here; CSV and JSON output keep the exact value."""
    return _OBEYED.sub(lambda m: _escape(m.group()), text)


def _escape(ch: str) -> str:
    code = ord(ch)
    return _NAMED.get(ch) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def _width(text: str) -> int:
    """Columns a terminal gives the text: measured on its NFC form, where an NFD name's
    combining marks (a dakuten, an accent) have joined their letters; wcwidth knows
    wide, zero-width and combining characters."""
    import unicodedata

    from wcwidth import wcswidth, wcwidth

    text = unicodedata.normalize("NFC", text)
    width = wcswidth(text)
    if width >= 0:
        return width
    # A character wcwidth calls unprintable (it cannot be here: terminal_safe escaped
    # them) counts one column rather than poisoning the sum.
    return sum(max(wcwidth(ch), 0) if unicodedata.category(ch) != "Cc" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def _say(text: str) -> None:
    print(f"facelint: {terminal_safe(text)}", file=sys.stderr, flush=True)


def _wait_reporter(s: Settings, write: bool) -> Any:
    """The on_wait of a CLI open: says on stderr, at the first retry, who holds the store
    and how long this command waits (`read_wait` for reads, `lock_timeout` for writes)."""
    from daemon.common.storewait import WaitReporter

    limit, setting = (s.lock_timeout, "lock_timeout") if write else (s.read_wait, "read_wait")
    return WaitReporter(s.db, s.status_path(), limit, setting, _say)


def _store(s: Settings, write: bool = False) -> Any:
    """The store as a CLI command opens it: reads wait `read_wait`, writes
    `lock_timeout`, and either says its wait out loud."""
    from store.db import Store

    limit = s.lock_timeout if write else s.read_wait
    return Store(s.db, lock_timeout=limit, on_wait=_wait_reporter(s, write))


def cmd_top(s: Settings, args: argparse.Namespace) -> int:
    from store.queries.reports import TOP_COLUMNS, top_pairs

    with _store(s).reading() as con:
        pairs = top_pairs(con, args.n, include_reviewed=args.all)
    _emit(TOP_COLUMNS, [[p[c] for c in TOP_COLUMNS] for p in pairs], args.format)
    return 0


def cmd_export(s: Settings, args: argparse.Namespace) -> int:
    from store import backup
    from store.queries.reports import export_csv, write_file

    dest = args.csv if args.csv is not None else args.decisions
    with _store(s).reading() as con:
        doc = None if args.csv is not None else backup.export_review(con)

        def write(fh: TextIO) -> int:
            return export_csv(con, fh) if doc is None else backup.write_backup(doc, fh)

        n = write(sys.stdout) if str(dest) == "-" else write_file(dest, write)
    if doc is None:
        print(f"{n} pairs written to {dest}", file=sys.stderr)
    else:
        said = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in backup.counts(doc).items())
        print(f"backup of the review written to {dest}: {said}", file=sys.stderr)
    return 0


def cmd_import(s: Settings, args: argparse.Namespace) -> int:
    from store import backup
    from store.connection import StoreMissing

    source = str(args.decisions)
    try:
        if source == "-":
            text = sys.stdin.buffer.read().decode("utf-8")
        else:
            text = args.decisions.read_bytes().decode("utf-8")
        checked = backup.read_backup(text, "-" if source == "-" else source)
    except UnicodeDecodeError as exc:
        print(f"facelint: {source} is not a facelint backup: not UTF-8 ({exc})", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"facelint: cannot read {source}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except backup.BackupError as exc:
        print(f"facelint: {exc}; nothing imported", file=sys.stderr)
        return 2
    store = _store(s, write=True)
    if not store.exists():
        # A typo in --db must not make a store of its own: restore into a scanned one.
        raise StoreMissing(f"no store at {s.db}: run `facelint scan` first, then import")
    with store.writing() as con:
        done = backup.import_review(con, checked)
    print(f"restored from {source} into {s.db}" + ("" if done.changed() else ": nothing new"))
    for name in backup.SECTIONS:
        m = getattr(done, name)
        print(
            f"  {name.replace('_', ' '):<22}{m.new} new, {m.replaced} replaced, "
            f"{m.kept} kept (already there, or newer in the store)"
        )
    if checked.legacy:
        print("  (an older facelint's CSV: pair decisions only)")
    return 0


def cmd_sql(s: Settings, args: argparse.Namespace) -> int:
    import duckdb

    from store.queries.reports import SqlRefused, check_sql, run_sql

    store = _store(s, write=args.write)
    try:
        check_sql(args.query)
        # A DuckDB of its own: run_sql locks its settings, which must not outlive it.
        opened = store.writing if args.write else store.reading
        with opened(own_instance=True) as con:
            columns, rows = run_sql(con, args.query)
            _emit(columns, list(rows), args.format)
    except SqlRefused as exc:
        print(f"facelint: {terminal_safe(str(exc))}", file=sys.stderr)
        return 4
    except duckdb.PermissionException as exc:
        # The locked settings caught what the statement check let through.
        print(
            f"facelint: refused: {terminal_safe(str(exc))} (facelint sql reaches nothing "
            "outside the store)",
            file=sys.stderr,
        )
        return 4
    return 0


def cmd_status(s: Settings, args: argparse.Namespace) -> int:
    from daemon.status import read_status

    status = read_status(s, on_wait=_wait_reporter(s, write=False))
    # A store that cannot be read is an error (exit 4), said after everything the
    # daemon's status file still tells; a busy or missing one is a note.
    code = 4 if status.get("store_error") else 0
    if args.json:
        print(json.dumps(status, ensure_ascii=False, default=str))
        return code
    for key, value in human_status(status, time.time()):
        print(f"{key:<18}{terminal_safe(value)}")
    return code


def human_status(status: dict[str, Any], now: float) -> list[tuple[str, str]]:
    """`facelint status` as a table a person reads: ages, °C, thousands separators."""
    from daemon.common import humanize
    from daemon.common.humanize import age, count, rate
    from daemon.common.statusfile import parse_progress

    temp = status.get("temperature")
    rows = [
        ("state", str(status.get("state", "—"))),
        ("heartbeat", age(status.get("heartbeat"), now)),
        ("pid", count(status.get("pid"))),
        ("queue", count(status.get("queue"))),
        ("throughput", rate(status.get("throughput"))),
        ("temperature", "no sensor" if temp is None else f"{float(temp):.0f} °C"),
        ("throttled", "yes" if status.get("throttled") else "no"),
        # The daemon writes this one as ISO-8601 text, the heartbeat as a number.
        ("last reconcile", age(status.get("last_reconcile"), now)),
        ("images", count(status.get("images"))),
        ("classes", count(status.get("classes"))),
        ("pairs", count(status.get("pairs"))),
        ("unreviewed", count(status.get("unreviewed_pairs"))),
        ("encoded in all", count(status.get("encoded_total"))),
        ("store", str(status.get("store", "—"))),
    ]
    statuses = status.get("statuses")
    if isinstance(statuses, dict) and statuses:
        rows.append(
            ("images by status", ", ".join(f"{k} {count(v)}" for k, v in sorted(statuses.items())))
        )
    progress = parse_progress(status.get("progress"))
    if progress is not None:
        line = humanize.progress(progress.stage, progress.done, progress.total, progress.eta_s)
        rows.insert(4, ("progress", line))
    if "open_suggestions" in status:
        kinds = status.get("open_suggestions_by_kind") or {}
        detail = ", ".join(f"{k} {count(v)}" for k, v in sorted(kinds.items()))
        rows.append(
            (
                "open suggestions",
                count(status["open_suggestions"]) + (f" ({detail})" if detail else ""),
            )
        )
    cal = status.get("calibration")
    if isinstance(cal, dict):
        fpi, recall = cal.get("false_matches_per_image"), cal.get("recall")
        rows.append(
            (
                "at the threshold",
                f"{cal.get('threshold')}: "
                + ("—" if fpi is None else f"{fpi:.2g} false matches per image")
                + ("" if recall is None else f", recall {recall:.0%}"),
            )
        )
    switch = status.get("switch")
    if isinstance(switch, dict):
        rows.append(
            (
                "model switch",
                f"{switch['serving']} serves while {switch['to']} encodes: "
                f"{count(switch['encoded'])} of {count(switch['total'])}",
            )
        )
    if status.get("longest_store_wait"):
        rows.append(("longest store wait", f"{float(status['longest_store_wait']):.1f} s"))
    if status.get("waiting_for_store"):
        held = count(status["waiting_for_store"])
        rows.append(("waiting for store", f"{held} changed paths, retried until it works"))
    if status.get("store_error"):
        rows.append(("STORE ERROR", str(status.get("store_message"))))
    elif status.get("store_readable") is False:
        rows.append(("store note", str(status.get("store_message", "busy"))))
    if status.get("alert"):
        rows.append(("ALERT", str(status["alert"])))
    if status.get("message") and status.get("message") != status.get("alert"):
        rows.append(("message", str(status["message"])))
    return rows


def cmd_search(s: Settings, args: argparse.Namespace) -> int:
    # Only the standard library until it is known that no daemon answers: asking the
    # running daemon (its model is loaded) is about a second, loading one is several.
    from daemon.common import searchclient

    photo: Path = args.photo
    if not photo.is_file():
        print(f"facelint: {terminal_safe(str(photo))} is not a file", file=sys.stderr)
        return 2
    try:
        started = time.perf_counter()
        result = searchclient.ask(
            s.search_socket_path(), s.search_key_path(), photo.read_bytes(), photo.name, args.n
        )
        result["photo"] = str(photo)
        result.setdefault("seconds", {})["round_trip"] = round(time.perf_counter() - started, 4)
    except searchclient.SearchRefused as exc:
        print(f"facelint: {terminal_safe(str(exc))}", file=sys.stderr)
        return 2
    except searchclient.DaemonAbsent as exc:
        log.debug("searching here: %s", exc)
        _say("no daemon answers searches for this store: encoding the photo here")
        from daemon.search import SearchError, search

        try:
            found = search(s, photo, args.n, on_wait=_wait_reporter(s, write=False))
        except SearchError as exc:
            print(f"facelint: {terminal_safe(str(exc))}", file=sys.stderr)
            return 2
        result = {**found.as_dict(), "searched_by": f"this command (pid {os.getpid()})"}
    if args.json:
        print(json.dumps(result, ensure_ascii=False, default=str))
        return 0
    hits = result.get("results", [])
    print(
        terminal_safe(
            f"{args.photo}: {result.get('faces', 0)} face(s); nearest {len(hits)} of the store"
        )
    )
    _emit(
        ["rank", "score", "folder", "path"],
        [[h["rank"], h["score"], h["folder"], h["path"]] for h in hits],
        "table",
    )
    return 0


def cmd_daemon(s: Settings, args: argparse.Namespace) -> int:
    from daemon.service import daemon_lock, run_service

    with daemon_lock(s) as lock:
        return run_service(s, lock)


def cmd_dashboard(s: Settings, args: argparse.Namespace) -> int:
    from daemon.launch import run_dashboard

    return run_dashboard(s)


def cmd_up(s: Settings, args: argparse.Namespace) -> int:
    from daemon.up import run_up

    return run_up(s)


_COMMANDS = {
    "scan": cmd_scan,
    "top": cmd_top,
    "export": cmd_export,
    "import": cmd_import,
    "sql": cmd_sql,
    "search": cmd_search,
    "status": cmd_status,
    "daemon": cmd_daemon,
    "dashboard": cmd_dashboard,
    "up": cmd_up,
}


if __name__ == "__main__":
    raise SystemExit(main())
