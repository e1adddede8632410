"""Output that survives pipes, logs and CI: full-width tables outside a terminal,
``--format csv|json|markdown``, ``--debug`` and ``--format`` anywhere, ``--version``,
library errors worded with flags, and ``make test`` showing pytest's closing line."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import candletok
from candletok.cli import commands  # noqa: F401  (registers every command)
from candletok.cli.app import STATE, app, flag_wording, hoist_global_options
from candletok.core.errors import SourceError

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it in a pipe: stdout is not a terminal, no COLUMNS."""
    return subprocess.run(
        [sys.executable, "-m", "candletok.cli.main", *args], cwd=cwd, capture_output=True,
        text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "CANDLETOK_OFFLINE": "1", "HOME": str(cwd),
             "CANDLETOK_CACHE": str(cwd / "cache")},
    )


def test_tables_in_a_pipe_are_never_cut(tmp_path: Path) -> None:
    out = "a_folder_with_a_rather_long_name/and_a_file_name_that_is_long_too.parquet"
    (tmp_path / out).parent.mkdir()
    r = cli("download", "AAPL", "MSFT", "IBM", "GOOG", "FB", "--source", "sample", "--out", out,
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "…" not in r.stdout
    assert f"-> {out}" in r.stdout  # the title on one line, whole
    assert re.search(r"│ symbol\s+│ bars\s+│ first\s+│ last\s+│ source │", r.stdout.replace(
        "┃", "│"))
    assert max(len(line) for line in r.stdout.splitlines()) > 80


def test_format_csv_json_markdown(tmp_path: Path) -> None:
    args = ["download", "AAPL", "FB", "--source", "sample", "--out", "b.parquet", "--overwrite"]
    r = cli(*args, "--format", "csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))  # stdout is only the data
    assert [row["symbol"] for row in rows] == ["AAPL", "FB"]
    assert rows[0]["bars"] == "3270" and rows[1]["first"] == "2012-05-18"
    assert "b.parquet" in r.stderr  # the title goes to stderr
    r = cli("--format", "json", *args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout.strip())
    assert doc["columns"] == ["symbol", "bars", "first", "last", "source"]
    assert doc["rows"][0] == {"symbol": "AAPL", "bars": 3270, "first": "2000-03-01",
                              "last": "2013-03-01", "source": "sample"}
    r = cli(*args, "--format=markdown", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "| symbol | bars | first | last | source |" in r.stdout and "|---|" in r.stdout
    r = cli(*args, "--format", "xml", cwd=tmp_path)
    assert r.returncode == 1 and "--format" in r.stderr and "Traceback" not in r.stderr


def test_json_lines_hold_every_table(tmp_path: Path) -> None:
    r = cli("encode", "AAPL", "--source", "sample", "--format", "json", "--out", "ds",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    docs = [json.loads(line) for line in r.stdout.splitlines()]
    # one document per table: the splits, then each split's point masses (flat opens ...)
    assert [d["table"].split()[0] for d in docs] == ["Dataset", "Point"], docs
    for doc in docs:
        assert [row["split"] for row in doc["rows"]] == ["train", "val", "test"]
    assert all(isinstance(row["candles"], int) for row in docs[0]["rows"])
    assert "vocab" in r.stderr  # prose is on stderr in csv/json


def test_debug_and_format_anywhere() -> None:
    assert hoist_global_options(["download", "AAPL", "--debug", "--format", "csv"]) == [
        "--debug", "--format", "csv", "download", "AAPL"]
    assert hoist_global_options(["x", "--format=json", "--", "--debug"]) == [
        "--format=json", "x", "--", "--debug"]
    r = runner.invoke(app, ["sample", "--debug"])
    assert r.exit_code == 0, r.output
    assert "AAPL" in r.output and "No such option" not in r.output
    assert STATE["debug"]
    runner.invoke(app, ["sample"])
    assert not STATE["debug"]  # one command's --debug does not carry into the next


def test_debug_after_the_command_shows_the_traceback(tmp_path: Path) -> None:
    r = cli("download", "NOPE", "--source", "sample", "--debug", cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" in r.stderr and "BarsError" in r.stderr
    r = cli("download", "NOPE", "--source", "sample", cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr


def test_version() -> None:
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"candletok {candletok.__version__}"


def test_library_errors_name_arguments_and_the_cli_names_flags(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"start=2012-01-01 is not before end=2011-01-01"):
        candletok.load_bars("AAPL", source="sample", start="2012-01-01", end="2011-01-01")
    r = runner.invoke(app, ["download", "AAPL", "--source", "sample", "--start", "2012-01-01",
                            "--end", "2011-01-01", "--out", str(tmp_path / "x.parquet")])
    assert r.exit_code != 0
    assert str(r.exception) == "--start 2012-01-01 is not before --end 2011-01-01."
    assert flag_wording("pass overwrite=True to replace it.") == "pass --overwrite to replace it."
    assert flag_wording("use interval='1d' or source='synthetic'.") == (
        "use --interval 1d or --source synthetic.")
    assert flag_wording("n_bars= must be at least 1") == "--bars must be at least 1"
    assert flag_wording("pass steps=N with N above 80, or patience=0.") == (
        "pass --steps N with N above 80, or --patience 0.")
    assert flag_wording("lower lr= and retry.") == "lower --lr and retry."
    assert flag_wording("policy='repair' and token=5 stay") == "policy='repair' and token=5 stay"


def test_no_library_message_names_a_flag() -> None:
    """Library errors name API arguments; only candletok/cli/ speaks in flags."""
    offenders = []
    for path in (ROOT / "candletok").rglob("*.py"):
        if "cli" in path.relative_to(ROOT / "candletok").parts[:1]:
            continue
        text = path.read_text(encoding="utf-8")
        offenders += [f"{path.name}: {m}" for m in re.findall(r"pass --[a-z-]+", text)]
    assert offenders == []


def test_make_test_keeps_pytests_closing_line(tmp_path: Path) -> None:
    """`make test` runs pytest with pyproject's addopts and the Makefile's flags; together
    they must leave pytest's closing "N passed" line (with -qq it is dropped)."""
    m = re.search(r'^addopts\s*=\s*"([^"]*)"', (ROOT / "pyproject.toml").read_text(), re.M)
    addopts = m.group(1) if m else ""
    recipe = (ROOT / "Makefile").read_text().split("\ntest:", 1)[1].split("\n\n", 1)[0]
    line = next(ln for ln in recipe.splitlines() if "-m pytest" in ln)
    flags = line.split("-m pytest", 1)[1].split()
    (tmp_path / "test_one.py").write_text("def test_one():\n    assert True\n")
    r = subprocess.run([sys.executable, "-m", "pytest", *flags, "-o", f"addopts={addopts}",
                        "-p", "no:cacheprovider", "test_one.py"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^1 passed", r.stdout, re.M), r.stdout
