"""Registries instead of string dispatch: a toy search mode (tests/toy_mode.py) and a toy
data source (tests/toy_source.py), each one file, run through the CLI (`encode --source
toy`, `similar --mode toy`, `evaluate --analogues toy`) and the library; the registry's
rules; and SearchSpec, the one options object of a search."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from _helpers import run_main
from hypothesis import given, settings
from hypothesis import strategies as st

from candletok.core.errors import CandletokError, SourceError
from candletok.core.registry import Registry, one_of
from candletok.data.feeds import SOURCES, register_source, source_help, sources
from candletok.data.sources import load_bars
from candletok.search.modes import MODES, SearchMode, get_mode, mode_help, modes, register_mode
from candletok.search.similar import similar
from candletok.search.spec import SearchSpec


@pytest.fixture(scope="module")
def toys() -> Iterator[None]:
    """The toy mode and source, registered (by importing their files) for this module
    only."""
    import toy_mode
    import toy_source

    if "toy" not in MODES:
        register_mode(toy_mode.Toy)
    if "toy" not in SOURCES:
        register_source(toy_source.ToySource)
    yield
    MODES.unregister("toy")
    SOURCES.unregister("toy")


def run_cli(args: tuple[str, ...], cwd: Path, capsys: pytest.CaptureFixture[str],
            monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    """The console script's entry point in this process (exit code, stdout, stderr): the
    toys are registered in this process, as a user's plugin would be."""
    return run_main(args, cwd, capsys, monkeypatch, CANDLETOK_OFFLINE="1")


@pytest.fixture(scope="module")
def work(toys: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset encoded from the toy source through the CLI."""
    from candletok.cli import main

    work = tmp_path_factory.mktemp("registries")
    mp = pytest.MonkeyPatch()
    try:
        mp.chdir(work)
        mp.setattr(sys, "argv", ["candletok", "encode", "AA", "BB", "CC", "--source", "toy",
                                 "--out", "ds"])
        with pytest.raises(SystemExit) as ex:
            main.run()
        assert not ex.value.code
    finally:
        mp.undo()
    return work


def test_toy_source_encodes_through_the_cli(work: Path) -> None:
    manifest = json.loads((work / "ds" / "manifest.json").read_text())
    assert sorted(manifest["symbols"]) == ["AA", "BB", "CC"]
    assert (work / "ds" / "train").is_dir()


def test_toy_mode_answers_similar_through_the_cli(work: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run_cli(("similar", "AA", "--dataset", "ds", "--mode", "toy", "--top",
                              "4", "--last", "3", "--no-calibrate", "--json"), work, capsys,
                             monkeypatch)
    assert code == 0, err
    d = json.loads(out)
    assert d["summary"]["mode"] == "toy" and d["summary"]["matches"] == 4
    ends = [m["end"] for m in d["matches"]]
    assert ends == sorted(ends, reverse=True)  # by_recency: the most recent first
    assert all(e <= d["summary"]["T"] for e in ends)
    lib = similar(work / "ds", "AA", mode="toy", top=4, last=3)  # the library, same answer
    assert json.loads(json.dumps(lib.to_dict(), default=str))["matches"] == d["matches"]
    code, out, err = run_cli(("similar", "AA", "--dataset", "ds", "--mode", "toy", "--top",
                              "4", "--last", "3", "--no-calibrate"), work, capsys, monkeypatch)
    assert code == 0, err
    assert "most recent matches" in out and "mode toy" in out


def test_toy_mode_is_calibrated_and_scored_like_the_builtins(
        work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run_cli(("similar", "AA", "--dataset", "ds", "--mode", "toy", "--top", "4",
                              "--last", "3", "--val-origins", "25", "--horizon", "1",
                              "--json"), work, capsys, monkeypatch)
    assert code == 0, err
    cal = json.loads(out)["calibration"]
    assert cal is not None and [h["horizon"] for h in cal["horizons"]] == [1]
    code, out, err = run_cli(("evaluate", "ds", "--split", "val", "--horizon", "1", "--json",
                              "--analogues", "toy", "--analogue-subsample", "20"), work, capsys,
                             monkeypatch)
    assert code == 0, err
    names = {row["forecaster"] for row in json.loads(out)["direction"]}
    assert "toy analogues" in names


def test_unknown_names_list_every_registered_one(work: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_cli(("similar", "AA", "--dataset", "ds", "--mode", "fuzzy"), work,
                           capsys, monkeypatch)
    assert code != 0 and "use exact, nearest, model, learned or toy" in " ".join(err.split())
    code, _, err = run_cli(("encode", "AA", "--source", "quandl", "--out", "x"), work, capsys,
                           monkeypatch)
    assert code != 0
    assert "auto, yahoo, sample, synthetic, toy or an existing CSV/Parquet path" in \
        " ".join(err.split())
    code, _, err = run_cli(("evaluate", "ds", "--analogues", "exact,fuzzy"), work, capsys,
                           monkeypatch)
    assert code != 0 and "exact, nearest, model, learned, toy, all or none" in " ".join(err.split())
    with pytest.raises(SourceError, match="Unknown source 'quandl'; use auto, yahoo"):
        load_bars(["AA"], source="quandl")
    assert load_bars(["AA"], source="TOY ").height == 400  # names as the built-ins: any case


def test_cli_help_comes_from_the_registries() -> None:
    from typer.testing import CliRunner

    from candletok.cli.main import app

    def flat(*args: str) -> str:
        r = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "300"})
        assert r.exit_code == 0, r.output
        return " ".join(r.output.replace("│", " ").split())

    builtin_modes = [m for m in MODES.items() if m.name != "toy"]
    text = flat("similar")
    for m in builtin_modes:
        assert " ".join(m.describe().split()) in text
    text = flat("encode")
    for s in SOURCES.items():
        if s.name != "toy":
            assert " ".join(s.describe().split()) in text
    text = flat("evaluate")
    assert "exact, nearest, model (needs --model)," in text
    assert "all (every registered mode) or none" in text


def test_evaluate_scores_every_registered_mode_by_default(
        work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`--analogues all` (the default) is read when the command runs, not when the CLI was
    imported, so a mode registered since is scored and one removed since is not asked."""
    code, out, err = run_cli(("evaluate", "ds", "--split", "val", "--horizon", "1", "--json",
                              "--analogue-subsample", "10"), work, capsys, monkeypatch)
    assert code == 0, err
    names = {row["forecaster"] for row in json.loads(out)["direction"]}
    assert {"exact analogues", "nearest analogues", "toy analogues"} <= names


def test_modes_and_sources_are_ordered_builtins_first(toys: None) -> None:
    assert modes() == ("exact", "nearest", "model", "learned", "toy")
    assert sources() == ("auto", "yahoo", "sample", "synthetic", "toy")
    assert mode_help().startswith("exact (") and "toy (" in mode_help()
    assert "a CSV/Parquet path" in source_help()
    assert get_mode("model").needs_model and get_mode("model").costly
    assert get_mode("exact").by_recency and not get_mode("nearest").by_recency


def test_registry_refuses_a_taken_or_malformed_name() -> None:
    class Thing:
        rank = 0

        def __init__(self, name: str) -> None:
            self.name = name

    reg: Registry[Thing] = Registry("gizmo", "candletok.search.modes")
    reg.register(Thing("a"))
    with pytest.raises(CandletokError, match="already registered"):
        reg.register(Thing("a"))
    reg.register(Thing("a"), replace=True)
    for bad in ("", "A", "1x", "has space", "x.csv"):
        with pytest.raises(CandletokError, match="gizmo name"):
            reg.register(Thing(bad))
    with pytest.raises(CandletokError, match="Unknown gizmo 'b'; use a"):
        reg.get("b")
    reg.unregister("a")
    assert "a" not in reg
    with pytest.raises(CandletokError, match="already registered"):
        register_mode(get_mode("exact"))  # a plugin cannot shadow a built-in by accident
    assert one_of(["x"]) == "x" and one_of(["x", "y", "z"]) == "x, y or z"


def test_a_mode_without_search_says_so() -> None:
    class Half(SearchMode):
        name = "half"
        help = "no search"

    with pytest.raises(NotImplementedError):
        Half().search(None, None, None, None, SearchSpec())  # type: ignore[arg-type]


# --- SearchSpec ----------------------------------------------------------------------


def test_spec_checks_once_in_one_sentence() -> None:
    for kw, msg in (({"mode": "fuzzy"}, "Unknown mode 'fuzzy'"),
                    ({"last": 0}, "last and top must be at least 1"),
                    ({"top": 0}, "last and top must be at least 1"),
                    ({"min_matches": -1}, "min_matches at least 0"),
                    ({"last": 2.5}, "last= must be a whole number"),
                    ({"horizons": "1,x"}, "whole numbers of bars"),
                    ({"horizons": ()}, "positive numbers of bars"),
                    ({"mode": "model"}, "needs a trained checkpoint")):
        with pytest.raises(CandletokError, match=msg):
            SearchSpec(**kw)  # type: ignore[arg-type]
    with pytest.raises(CandletokError, match="no option colour"):
        SearchSpec.of(None, colour="red")
    assert SearchSpec(mode=" Nearest ").mode == "nearest"
    assert SearchSpec(last=np.int64(3)).last == 3


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 50), min_size=1, max_size=6), st.integers(1, 9),
       st.integers(1, 40), st.integers(0, 20), st.sampled_from(["exact", "nearest"]))
def test_spec_normalises_and_replaces_only_what_is_given(hs: list[int], last: int, top: int,
                                                         mm: int, mode: str) -> None:
    s = SearchSpec(mode=mode, last=last, top=top, min_matches=mm, horizons=hs)
    assert s.horizons == tuple(sorted(set(hs)))
    assert SearchSpec.of(s) is s and SearchSpec.of(s, top=None, last=None) is s
    assert SearchSpec(horizons=",".join(map(str, hs))).horizons == s.horizons
    t = SearchSpec.of(s, top=top + 1)
    assert t.top == top + 1 and t.replace(top=top) == s
    assert json.loads(json.dumps(s.key())) == s.key()
    assert s.key()["model_sha256"] is None and s.key()["horizons"] == list(s.horizons)


def test_keyword_api_and_spec_give_the_same_search(work: Path) -> None:
    ds = work / "ds"
    a = similar(ds, "BB", last=3, mode="nearest", top=7, horizons="1,5")
    b = similar(ds, "BB", SearchSpec(mode="nearest", last=3, top=7, horizons=(5, 1)))
    c = similar(ds, "BB", SearchSpec(mode="nearest", last=3, top=2, horizons=(1, 5)), top=7)
    for other in (b, c):
        assert json.dumps(other.to_dict(), default=str) == json.dumps(a.to_dict(), default=str)


def test_calibration_cache_key_is_the_spec_key_plus_the_replay() -> None:
    """The key keeps the layout caches were written with (no stale or orphaned maps)."""
    from candletok.evaluation.simcal import SIMCAL_FORMAT, ReplaySettings, _key

    spec = SearchSpec(mode="nearest", last=4, top=9, min_matches=3, horizons=(5, 1))
    s = ReplaySettings(spec, 200, 20.0, 0, 5, 1000)
    idx = SimpleNamespace(key="k", fingerprint="f")
    assert _key(idx, s, "all") == {  # type: ignore[arg-type]
        "format": SIMCAL_FORMAT, "index": "k", "fingerprint": "f", "cut": "all",
        "mode": "nearest", "last": 4, "top": 9, "min_matches": 3, "horizons": [1, 5],
        "model_sha256": None, "approximate": False, "val_origins": 200, "prior": 20.0,
        "seed": 0, "folds": 5, "n_boot": 1000}
