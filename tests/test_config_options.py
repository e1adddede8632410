"""``candletok encode`` and ``candletok train`` are built from ``BuildConfig`` and
``TrainConfig``: each option's flag, default and help text is its field's, a command run
without options hands the library exactly the config's defaults, and there is one model
size (``GPTConfig`` reads ``TrainConfig``'s)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from candletok.cli import (
    cmd_data,
    commands,  # noqa: F401  (registers every command)
)
from candletok.cli.app import app
from candletok.cli.configopts import config_option
from candletok.core.fields import setting, setting_default, setting_flag, setting_help
from candletok.dataset.build import BuildConfig
from candletok.model.config import TrainConfig

runner = CliRunner()

# train options whose CLI default is None on purpose: absent must stay visible, because a
# resumed run keeps its saved value (patience, threads) or the config decides (calendar)
UNSET_ON_CLI = {"patience", "threads", "calendar"}


def _declared(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("help")]


def _options(command: str) -> dict[str, Any]:
    group = typer.main.get_command(app)  # a click group (typer may bundle its own click)
    cmd = group.commands[command]  # type: ignore[attr-defined]
    return {opt: p for p in cmd.params for opt in p.opts}


@pytest.mark.parametrize("cls,command", [(BuildConfig, "encode"), (TrainConfig, "train")])
def test_every_declared_field_is_an_option_with_its_default_and_help(cls: type,
                                                                     command: str) -> None:
    opts = _options(command)
    declared = _declared(cls)
    assert len(declared) >= 10
    for f in declared:
        flag = setting_flag(cls, f.name)
        assert flag in opts, f"{cls.__name__}.{f.name}: no {flag} on `candletok {command}`"
        p = opts[flag]
        if (cls, f.name) == (BuildConfig, "source"):  # the source registry owns this text
            from candletok.data.feeds import source_help

            assert p.help == source_help(), flag
        else:
            assert p.help == f.metadata["help"], flag
        if f.name == "out":
            continue  # BuildConfig.out is required; the CLI writes to data/ by default
        want = None if cls is TrainConfig and f.name in UNSET_ON_CLI else f.default
        assert p.default == want, f"{flag}: CLI default {p.default!r}, config {want!r}"


def test_the_train_flags_keep_their_names() -> None:
    assert {setting_flag(TrainConfig, n) for n in ("n_layer", "n_head", "n_embd", "batch_size")} \
        == {"--layers", "--heads", "--width", "--batch"}
    assert "[default: 2]" in runner.invoke(app, ["train", "--help"]).output.replace("\n", " ")


class _CapturedError(Exception):
    pass


def test_train_without_options_trains_exactly_the_default_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import candletok.model.train as train_mod

    seen: list[TrainConfig] = []

    def fake_train(dataset: Any, cfg: TrainConfig, **kw: Any) -> None:
        seen.append(cfg)
        raise _CapturedError

    monkeypatch.setattr(train_mod, "train", fake_train)
    r = runner.invoke(app, ["train", str(tmp_path / "ds"), "--out", str(tmp_path / "m.pt")])
    assert isinstance(r.exception, _CapturedError), r.output
    assert seen == [TrainConfig()]


def test_encode_without_options_builds_exactly_the_default_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[BuildConfig] = []

    def fake_build(cfg: BuildConfig, **kw: Any) -> None:
        seen.append(cfg)
        raise _CapturedError

    monkeypatch.setattr(cmd_data, "build", fake_build)
    out = tmp_path / "ds"
    r = runner.invoke(app, ["encode", "AAPL", "--out", str(out)])
    assert isinstance(r.exception, _CapturedError), r.output
    assert seen == [BuildConfig(["AAPL"], out)]


def test_one_model_size() -> None:
    """The size ``train`` uses (chosen on val, docs/model.md) is ``GPTConfig``'s default."""
    from candletok.model.gpt import GPTConfig

    t, g = TrainConfig(), GPTConfig()
    for name in ("context", "n_layer", "n_head", "n_embd", "dropout", "bias"):
        assert getattr(g, name) == getattr(t, name), name
    assert t.gpt_config(g.vocab_size) == g
    assert (t.n_layer, t.n_embd) == (2, 64)


@settings(max_examples=25, deadline=None)
@given(default=st.one_of(st.none(), st.integers(), st.text(max_size=5)),
       help_text=st.text(alphabet="abc {}default", max_size=20),
       flag=st.one_of(st.none(), st.just("--other")))
def test_a_setting_carries_its_default_help_and_flag(default: Any, help_text: str,
                                                     flag: str | None) -> None:
    @dataclasses.dataclass
    class C:
        some_field: Any = setting(default, help_text, flag=flag)

    assert C().some_field == default == setting_default(C, "some_field")
    assert setting_help(C, "some_field") == help_text.replace("{default}", str(default))
    assert setting_flag(C, "some_field") == (flag or "--some-field")
    opt = config_option(C, "some_field")
    assert opt.default == default and opt.help == setting_help(C, "some_field")
    assert config_option(C, "some_field", default=None).default is None
