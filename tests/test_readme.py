"""README.md is a user interface too: its commands and report queries must work."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from daemon.common.statusfile import STALE_SECONDS

README = Path(__file__).resolve().parent.parent / "README.md"
CI = Path(__file__).resolve().parent.parent / ".ci" / "run"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_report_queries_run_against_a_real_store(scanned_dev):
    _, db = scanned_dev
    queries = blocks("sql")
    assert len(queries) >= 3
    con = duckdb.connect(str(db), read_only=True)
    try:
        results = [con.execute(q).fetchall() for q in queries]
    finally:
        con.close()
    queue, by_folder, no_face = results[:3]
    assert queue[0][0] == "same_person" and {queue[0][2], queue[0][3]} == {
        "Joe_Biden",
        "Joseph_Biden",
    }
    assert by_folder[0][:2] == ("Joe_Biden", "Joseph_Biden")
    assert ("no_face", "Charlton_Heston/pilatus800.jpg") in [r[:2] for r in no_face]


def test_ci_runs_the_readme_test_command():
    commands = blocks("sh")
    assert len(commands) >= 2
    test_command = commands[1].strip()
    assert test_command in CI.read_text(encoding="utf-8")


# -- the configuration list: made from the settings model ---------------------------------


def settings_table() -> str:
    """README's configuration list as the model (daemon/config.py) and the CLI's flags
    (daemon/cli.py) say it: one row per setting, its TOML default, flags and meaning."""
    import argparse

    from daemon.cli import build_parser
    from daemon.config import Settings, default_text

    flags: dict[str, set[str]] = {}
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command in sub.choices.values():
        for action in command._actions:
            if action.help == argparse.SUPPRESS:
                continue
            spelled = action.option_strings or [action.dest.upper()]
            flags.setdefault(action.dest, set()).update(spelled)
    rows = ["| setting | default | flag | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        shown = ", ".join(f"`{f}`" for f in sorted(flags.get(name, ()))) or "—"
        rows.append(
            f"| `{name}` | `{default_text(name, toml=True)}` | {shown} | {field.description} |"
        )
    return "\n".join(rows) + "\n"


def configuration_section() -> str:
    text = README.read_text(encoding="utf-8")
    return text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]


def test_readme_lists_every_setting_with_the_models_default_and_meaning():
    table = settings_table()
    assert table in configuration_section(), "README's Configuration table should be:\n" + table


def test_readme_configuration_example_is_valid(tmp_path):
    from daemon.config import load_settings

    (example,) = re.findall(r"```toml\n(.*?)```", configuration_section(), re.S)
    cfg = tmp_path / "facelint.toml"
    cfg.write_text(example, encoding="utf-8")
    s = load_settings(cfg, env={})
    assert s.threshold == 0.45 and s.page_lock_timeout == 3.0


# -- figures README quotes from benchmarks/results/ ------------------------------------------

RESULTS = README.parent / "benchmarks" / "results"


def _kept(n: int, d: int, after: bool) -> str:
    """scale.txt: the folder index's "bring up to date" figure of the n × d run, the one
    after the upkeep followed the change (its line says what comparing every row adds)
    or the one before."""
    tail = r", search [\d.]+; finding" if after else r", search [\d.]+\)"
    return rf"^n={n} d={d} folders(?:(?!\n\n).)*?bring up to date (\d+\.\d){tail}"


@dataclass(frozen=True)
class Quoted:
    """Figures README quotes from one results file. `readme` and `result` are regexes with
    the same number of groups: each README group is the figure as written there, the
    group of the same rank in `result` the measured value. `scale` turns the result's
    unit into README's (ms → s: 0.001); `pick` chooses among several result matches."""

    readme: str
    source: str
    result: str
    scale: float = 1.0
    pick: str = "one"  # one | max | last (a results file that keeps older runs' blocks)


# The accuracy summaries of LFW A–C: the section before the dev faces' one.
_LFW = r"## LFW A–C(?:(?!\n## ).)*?"
_DLIB_LFW = _LFW + r"\[dlib\] all seeds: [^\n]*\n(?:  [^\n]*\n)*?"
_ARC_LFW = _LFW + r"\[arcface\] all seeds: [^\n]*\n(?:  [^\n]*\n)*?"

# The mixed folders' summaries (issue 14): each model's "all seeds" block of the two
# "Mixed folders" sections, LFW A–C then East Asian.
_MIX_RUN = r"(?:(?!\n## ).)*?\[{model}\] all seeds: [^\n]*\n(?:  [^\n]*\n)*?  mixed folders [^\n]*?"


def _mixed(figure: str) -> str:
    """The four values of one mixed-folder figure, in README's column order."""
    return r"(?:.)*?".join(
        rf"## Mixed folders, {name}"
        + _MIX_RUN.format(model="dlib")
        + figure
        + _MIX_RUN.format(model="arcface")
        + figure
        for name in ("LFW A–C", "East Asian")
    )


QUOTED = (
    # The review queue's mixed folders (issue 14)
    Quoted(
        r"\| misplaced photos sent home by one card \| (\d+\.\d) % \| (\d+\.\d) % "
        r"\| (\d+\.\d) % \| (\d+\.\d) % \|",
        "accuracy.txt",
        _mixed(r"sent home by one card \d+/\d+ \((\d+\.\d)%\)"),
    ),
    Quoted(
        r"over two different people \(of the planted pairs\) \| (\d+\.\d) % \| (\d+\.\d) % "
        r"\| (\d+\.\d) % \| (\d+\.\d) % \|",
        "accuracy.txt",
        _mixed(r"merge traps \d+/\d+ \((\d+\.\d)%\)"),
    ),
    Quoted(
        r"a folder's own photos flagged \(as many as … of the misplaced\) \| (\d+\.\d) % "
        r"\| (\d+\.\d) % \| (\d+\.\d) % \| (\d+\.\d) % \|",
        "accuracy.txt",
        _mixed(r"own photos flagged \d+ of \d+ \((\d+\.\d)% of the misplaced count\)"),
    ),
    # How it works, step 8
    Quoted(
        r"the longest at 57,637 images:\s+(\d+\.\d+) s, `benchmarks/results/refresh\.txt`",
        "refresh.txt",
        r"^[^\n]*57637 images[^\n]*longest write-lock hold (\d+\.\d+) s",
        pick="max",
    ),
    # The review queue's table
    Quoted(
        r"\| planted mistakes among the first 2×M suggestions \| (\d+\.\d) % \| (\d+\.\d) % \|",
        "accuracy.txt",
        _LFW + r"\[dlib\] all seeds: [^\n]*\((\d+\.\d)%" + r"(?:(?!\n## ).)*?"
        r"\[arcface\] all seeds: [^\n]*\((\d+\.\d)%",
    ),
    Quoted(
        r"\| misfile destinations right \(of those named\) \| (\d+) / (\d+) \| (\d+) / (\d+) \|",
        "accuracy.txt",
        _DLIB_LFW + r"  misfile destinations right: (\d+)/(\d+) named(?:(?!\n## ).)*?"
        r"\[arcface\] all seeds: [^\n]*\n(?:  [^\n]*\n)*?"
        r"  misfile destinations right: (\d+)/(\d+) named",
    ),
    Quoted(
        r"\| the first 100 suggestions that are real mistakes \(by the labels\) "
        r"\| (\d+\.\d) % \| (\d+\.\d) % \|",
        "accuracy.txt",
        _DLIB_LFW + r"  precision of the first 300: \d+/300 \((\d+\.\d)%\)(?:(?!\n## ).)*?"
        r"\[arcface\] all seeds: [^\n]*\n(?:  [^\n]*\n)*?"
        r"  precision of the first 300: \d+/300 \((\d+\.\d)%\)",
    ),
    Quoted(
        r"\| pairs stored per true cross-folder pair \| (\d\.\d+) \| (\d\.\d+) \|",
        "accuracy.txt",
        _DLIB_LFW + r"  pairs stored [^\n]*\((\d\.\d+) per true pair(?:(?!\n## ).)*?"
        r"\[arcface\] all seeds: [^\n]*\n(?:  [^\n]*\n)*?"
        r"  pairs stored [^\n]*\((\d\.\d+) per true pair",
    ),
    Quoted(
        r"\| pair-ranking AP \| (\d\.\d+) \| (\d\.\d+) \|",
        "accuracy.txt",
        _DLIB_LFW + r"  pairs stored [^\n]*pair-ranking AP (\d\.\d+)(?:(?!\n## ).)*?"
        r"\[arcface\] all seeds: [^\n]*\n(?:  [^\n]*\n)*?"
        r"  pairs stored [^\n]*pair-ranking AP (\d\.\d+)",
    ),
    # The two models' table
    Quoted(
        r"\| pair-ranking AP, LFW A–C \(`benchmarks/results/accuracy\.txt`\) "
        r"\| (\d\.\d+) \| (\d\.\d+) \|",
        "accuracy.txt",
        _DLIB_LFW + r"  pairs stored [^\n]*pair-ranking AP (\d\.\d+)(?:(?!\n## ).)*?"
        r"\[arcface\] all seeds: [^\n]*\n(?:  [^\n]*\n)*?"
        r"  pairs stored [^\n]*pair-ranking AP (\d\.\d+)",
    ),
    Quoted(
        r"first 2×M / first 100 right \(`benchmarks/results/accuracy\.txt`\) "
        r"\| (\d+\.\d) % / (\d+\.\d) % \| (\d+\.\d) % / (\d+\.\d) % \|",
        "accuracy.txt",
        _LFW + r"\[dlib\] all seeds: [^\n]*\((\d+\.\d)%[^\n]*\n(?:  [^\n]*\n)*?"
        r"  precision of the first 300: \d+/300 \((\d+\.\d)%\)(?:(?!\n## ).)*?"
        r"\[arcface\] all seeds: [^\n]*\((\d+\.\d)%[^\n]*\n(?:  [^\n]*\n)*?"
        r"  precision of the first 300: \d+/300 \((\d+\.\d)%\)",
    ),
    Quoted(
        r"quiet machine \(`benchmarks/results/encoders\.txt`\) \| (\d+\.\d) img/s "
        r"\| (\d+\.\d) img/s \(SCRFD\); (\d+\.\d) with dlib's HOG \+ 68 landmarks \|",
        "encoders.txt",
        r"^encode_dlib_lfw_img_s +(\d+\.\d+)(?:.|\n)*?^encode_arcface_lfw_img_s +(\d+\.\d+)"
        r"(?:.|\n)*?^encode_arcface_hog68_lfw_img_s +(\d+\.\d+)",
    ),
    Quoted(
        r"2 cores \(`benchmarks/results/encoders\.txt`\) "
        r"\| 128-d: (\d+\.\d) s \| 512-d: (\d+\.\d) s \|",
        "encoders.txt",
        # In README's order, whatever the file's.
        r"\A(?=(?:.|\n)*?^compare_full_lists_128d_s +(\d+\.\d+))"
        r"(?=(?:.|\n)*?^compare_full_lists_512d_s +(\d+\.\d+))",
    ),
    # The review dashboard
    Quoted(
        r"at worst (\d+\.\d+) s with a million\s+pairs, `benchmarks/results/dashboard\.txt`",
        "dashboard.txt",
        r"^PASS: worst (\d+) ms, target \d+ ms",
        scale=0.001,
    ),
    Quoted(
        r"Measured in Chromium: median (\d+) ms from a key\s+press",
        "dashboard.txt",
        # The Pairs page's run (the Review page's are beside it).
        r"D/S/X in turn[^\n]*\n(?:  [^\n]*\n)*?  median (\d+) ms, 90th percentile",
    ),
    Quoted(
        r"beside it, on a 2-core machine that\s+other work kept at a load average of "
        r"(\d+\.\d)–(\d+\.\d), the median was (\d+) ms "
        r"\(90th percentile\s+(\d+) ms, the page turns\)",
        "dashboard.txt",
        r"Review page[^\n]*\n  condition: the daemon encoding[^\n]*load average \(1 min\) "
        r"during the keys (\d+\.\d)-(\d+\.\d) [^\n]*\n(?:  [^\n]*\n)*?  median (\d+) ms, "
        r"90th percentile (\d+) ms",
    ),
    # Millions of faces
    Quoted(
        r"was queryable (\d+\.\d+) s after\s+its encoding was written",
        "scale.txt",
        r"^n=1000000 folders=50000 new_face_s=(\d+\.\d+)",
        pick="last",
    ),
    Quoted(
        r"the review queue step took (\d+\.\d+) s",
        "scale.txt",
        r"^n=1000000 folders=50000 [^\n]* queue_s=(\d+\.\d+)",
        pick="last",
    ),
    # ...and the last one before its centroid search changed (the block above the note).
    Quoted(
        r"\((\d+\.\d+) s before its centroid search became",
        "scale.txt",
        r"queue_s=(\d+\.\d+)[^\n]*\n\n# -- the review queue step after issue 17's last change",
    ),
    Quoted(
        r"the daemon held (\d+\.\d+)×\s+the vectors' own size",
        "scale.txt",
        r"\(rss/vectors (\d+\.\d+),",
        pick="last",
    ),
    # The folder index kept in step (64 moved faces): after, and before, the upkeep that
    # follows the change.
    *(
        Quoted(readme, "scale.txt", _kept(n, d, after), pick="one")
        for readme, n, d, after in (
            (r"up to date took (\d+\.\d) ms at 25k\s+faces", 25050, 128, True),
            (r"faces, (\d+\.\d) ms at 100k,", 100200, 128, True),
            (r"(\d+\.\d) ms at 400k and", 400800, 128, True),
            (r"and (\d+\.\d) ms at 1 M \(128-d\)", 1002000, 128, True),
            (r"where it had taken\s+(\d+) ms,", 25050, 128, False),
            (r"taken\s+\d+ ms, (\d+) ms,", 100200, 128, False),
            (r"taken\s+\d+ ms, \d+ ms, ([\d,]+) ms and", 400800, 128, False),
            (r"ms and ([\d,]+) ms \(every centroid", 1002000, 128, False),
            (r"centroid recomputed\); (\d+\.\d) ms at 100k ×", 100200, 512, True),
        )
    ),
    Quoted(
        r"Searching the moved rows took another (\d+\.\d) ms at 400k",
        "scale.txt",
        r"^n=400800 d=128 folders(?:(?!\n\n).)*?search (\d+\.\d); finding",
    ),
    Quoted(
        r"at 400k:\s+exact (\d+\.\d) ms, the index\s+(\d+\.\d) ms\)",
        "scale.txt",
        r"^n=400800 d=128 folders(?:(?!\n\n).)*?cpu-ms: exact (\d+\.\d), index "
        r"(\d+\.\d) \(bring up to date [\d.]+, search [\d.]+; finding",
    ),
    # Search by photo
    Quoted(
        r"embedding, rank\) takes about (\d+\.\d) s and the whole command",
        "search.txt",
        r"all, median (\d+) ms",
        scale=0.001,
    ),
    Quoted(
        r"the whole command about (\d+\.\d) s from a cold start",
        "search.txt",
        r"; median (\d+\.\d+) s \(target",
    ),
    Quoted(
        r"the\s+daemon\s+answers\s+in\s+a\s+median\s+of\s+(\d+\.\d+) s\s+"
        r"\(the round\s+trip the\s+dashboard\s+makes\)\s+and\s+`facelint search`"
        r"\s+takes\s+(\d+\.\d+) s",
        "search.txt",
        r"round trip as the dashboard asks, \d+ runs: [^\n]*; median (\d+\.\d+) s, worst"
        r"(?:(?!\n\n).)*?whole `facelint search --json` command[^\n]*; median (\d+\.\d+) s$",
    ),
    # How it works, step 8: the waits
    Quoted(
        r"the\s+longest\s+store\s+waits\s+were\s+(\d+\.\d+) s\s+for\s+a\s+`facelint status`"
        r"\s+open,\s+(\d+\.\d+) s\s+for\s+a\s+page\s+and\s+(\d+\.\d+) s\s+for\s+the\s+daemon",
        "waits.txt",
        r"^worst store waits: a `facelint status` open (\d+\.\d+) s, a page (\d+\.\d+) s, "
        r"the daemon (\d+\.\d+) s",
    ),
    # Encoding on a Ray cluster
    Quoted(
        r"to the very same vectors at (\d+\.\d)× the\s+local pool's CPU seconds, with "
        r"(\d[\d,]*) MB of processes against the pool's (\d[\d,]*) MB, and\s+a job of 8 "
        r"images — a small daemon batch — took (\d+\.\d) s",
        "ray.txt",
        r"\A(?=(?:.|\n)*?^ray_vs_local_cpu +(\d+\.\d+))"
        r"(?=(?:.|\n)*?^ray_peak_rss_mb +(\d[\d,]*\.\d+))"
        r"(?=(?:.|\n)*?^local_peak_rss_mb +(\d[\d,]*\.\d+))"
        r"(?=(?:.|\n)*?^ray_small_job_wall_s +(\d+\.\d+))",
    ),
)

# Figures in those sections that are settings or rules, not measurements: (README text
# holding the figure, where it is defined).
NOT_MEASURED = (
    ("re-estimated when the set grows by 1 %", "the pipeline's re-estimate rule"),
    ("refreshes itself every 5 s", "the Status page's refresh interval"),
    ("within the 300 ms target", "the keyboard's target (bench_dashboard.py)"),
    (f"heartbeat is older than {STALE_SECONDS:g} s", "the status file's staleness limit"),
)

# A figure with a unit, as README writes one.
FIGURE = re.compile(r"(?<![\w.,])(\d[\d,]*(?:\.\d+)?)\s?(ms|s|img/s|%|×)(?![\w/])")


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def _decimals(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def _sections(text: str) -> list[tuple[int, str]]:
    """(offset, body) of each README section (## or ### heading) citing a results file."""
    starts = [m.start() for m in re.finditer(r"(?m)^#{2,3} ", text)] + [len(text)]
    return [
        (a, text[a:b]) for a, b in itertools.pairwise(starts) if "benchmarks/results/" in text[a:b]
    ]


def _readme_match(text: str, pattern: str) -> re.Match[str]:
    found = list(re.finditer(pattern, text, re.M))
    assert len(found) == 1, f"README should hold {pattern!r} once, holds it {len(found)} times"
    return found[0]


@pytest.mark.parametrize("quoted", QUOTED, ids=lambda q: f"{q.source}:{q.readme[:40]}")
def test_a_figure_readme_quotes_matches_its_results_file(quoted: Quoted):
    text = README.read_text(encoding="utf-8")
    written = _readme_match(text, quoted.readme).groups()
    assert f"benchmarks/results/{quoted.source}" in text
    results = (RESULTS / quoted.source).read_text(encoding="utf-8")
    found = [m.groups() for m in re.finditer(quoted.result, results, re.M | re.S)]
    assert found, f"{quoted.result!r} not in benchmarks/results/{quoted.source}"
    if quoted.pick == "max":
        measured = tuple(max(_number(m[i]) for m in found) for i in range(len(found[0])))
    elif quoted.pick == "last":
        measured = tuple(_number(v) for v in found[-1])
    else:
        assert len(found) == 1, f"{quoted.result!r}: {len(found)} matches, expected one"
        measured = tuple(_number(v) for v in found[0])
    assert len(measured) == len(written)
    for shown, value in zip(written, measured, strict=True):
        expected = round(value * quoted.scale, _decimals(shown))
        assert _number(shown) == expected, (
            f"README says {shown}, benchmarks/results/{quoted.source} says {value}"
            f" (x {quoted.scale}: {expected})"
        )


def test_every_figure_in_a_section_citing_results_has_its_source():
    """A figure with a unit in a README section that cites benchmarks/results/ is either
    one QUOTED checks against its results file, or a setting NOT_MEASURED names."""
    text = README.read_text(encoding="utf-8")
    covered: list[tuple[int, int]] = []
    for quoted in QUOTED:
        m = _readme_match(text, quoted.readme)
        covered += [m.span(i) for i in range(1, len(m.groups()) + 1)]
    for context, _why in NOT_MEASURED:
        at = text.find(context)
        assert at >= 0 and text.find(context, at + 1) < 0, f"{context!r}: not once in README"
        covered.append((at, at + len(context)))
    unsourced = []
    for offset, body in _sections(text):
        for m in FIGURE.finditer(body):
            a, b = offset + m.start(1), offset + m.end(1)
            if not any(lo <= a and b <= hi for lo, hi in covered):
                line = text.count("\n", 0, a) + 1
                unsourced.append(f"README.md:{line}: {m.group(0)}")
    assert not unsourced, "figures with no results line behind them: " + ", ".join(unsourced)
    for name in set(re.findall(r"benchmarks/results/([\w.-]+)", text)):
        assert (RESULTS / name).is_file(), f"README cites benchmarks/results/{name}: missing"


# -- names docs/design.md cites ---------------------------------------------------------------

DESIGN = README.parent / "docs" / "design.md"
CODE = ("daemon", "store", "dashboard", "benchmarks")


def _defines(module: Path, name: str) -> bool:
    source = module.read_text(encoding="utf-8")
    return re.search(rf"(?m)^\s*(?:def|class) {name}\b|^\s*{name}\s*[:=]", source) is not None


def _our_modules(stem: str) -> list[Path]:
    """The repository's modules of that name, none when the name is a library's (`dlib`)."""
    import importlib.util

    spec = importlib.util.find_spec(stem) if stem.isidentifier() else None
    if spec is not None and spec.origin and not spec.origin.startswith(str(README.parent)):
        return []
    return [p for top in CODE for p in (README.parent / top).rglob(f"{stem}.py")]


def _cited(token: str) -> bool | None:
    """Whether what a backquoted token of docs/design.md names exists; None: not a name
    of ours (a value, a setting, a library's function)."""
    repo = README.parent
    if m := re.fullmatch(r"([\w/]+\.py): (\w+)", token):  # daemon/inventory.py: check_path
        return (repo / m[1]).is_file() and _defines(repo / m[1], m[2])
    if re.fullmatch(r"[\w.-]+(?:/[\w.-]+)+\.(?:py|txt|sh)", token):  # a path
        return (repo / token).is_file()
    if re.fullmatch(r"\w+\.py", token):  # a module named by its file alone
        return any(any((repo / top).rglob(token)) for top in CODE)
    if m := re.fullmatch(r"((?:\w+/)+)(\w+)\.([a-z_]\w*)", token):  # store/reports.csv_writer
        module = repo / m[1] / f"{m[2]}.py"
        return module.is_file() and _defines(module, m[3])
    if m := re.fullmatch(r"(\w+)\.([a-z_]\w*)", token):  # images.to_rgb
        modules = _our_modules(m[1])
        return any(_defines(p, m[2]) for p in modules) if modules else None
    return None


def test_design_md_cites_files_and_functions_that_exist():
    """Every repository file, `module.function` and `file.py: function` docs/design.md
    names in backquotes exists (a rename or a removal updates the reason that cites it)."""
    tokens = re.findall(r"`([^`\n]+)`", DESIGN.read_text(encoding="utf-8"))
    checked = {t: _cited(t) for t in tokens}
    assert sum(v is not None for v in checked.values()) >= 20, "fewer names found than cited"
    missing = [t for t, ok in checked.items() if ok is False]
    assert not missing, "docs/design.md cites what is gone: " + ", ".join(missing)
