"""Options that several commands share, parsed in one place: the tokenizer settings
(``--scheme``, ``--k``, ``--bins``, ``--seed``) and how bars are read (``--strict-bars``,
``--date-format``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import polars as pl

from candletok.cli.app import fail, flag_wording
from candletok.core.errors import BarsError, CandletokError, TokenizerError
from candletok.core.horizons import check_horizons
from candletok.data.sources import load_bars
from candletok.tokenize.registry import schemes

STRICT_HELP = ("Refuse bars with broken rows (NaN, prices <= 0, high < low) instead of "
               "dropping them with a one-line report (--repair-bars, the default).")
DATE_FORMAT_HELP = ("strftime format of a CSV's dates when they are not ISO, e.g. %d/%m/%Y "
                    "or %Y%m%d.")


def parse_bins(spec: str) -> dict[str, int]:
    """``"9,13,3,3"`` or ``"9x13x3x3[x5]"`` -> gap/body/upper/lower[/vol] bin counts."""
    parts = [p for p in spec.replace("x", ",").replace("·", ",").split(",") if p.strip()]
    try:
        nums = [int(p) for p in parts]
    except ValueError as exc:
        raise TokenizerError(
            f"--bins {spec!r} is not a list of integers; write e.g. 9,13,3,3."
        ) from exc
    if len(nums) not in (4, 5):
        raise TokenizerError("--bins takes 4 or 5 counts: gap,body,upper,lower[,vol].")
    names = ("gap_bins", "body_bins", "upper_bins", "lower_bins", "vol_bins")
    return dict(zip(names, nums, strict=False))


def tokenizer_params(scheme: str, k: int | None = None, bins: str | None = None,
                     seed: int = 0) -> tuple[str, dict[str, object]]:
    """``--scheme``, ``--k``, ``--bins`` and ``--seed`` as (scheme, parameters) for
    :func:`candletok.tokenize.registry.make_tokenizer`; any case of the scheme is fine."""
    scheme = scheme.strip().lower()
    if scheme not in schemes():
        raise TokenizerError(f"Unknown --scheme {scheme!r}; use {' or '.join(sorted(schemes()))}.")
    if scheme == "bins" and k is not None:
        raise TokenizerError("--k sets the kmeans vocabulary size; with --scheme bins use --bins.")
    if scheme == "kmeans" and bins is not None:
        raise TokenizerError("--bins sets the bins counts; with --scheme kmeans use --k.")
    if k is not None and k < 1:
        raise TokenizerError(f"--k must be at least 1, not {k}.")
    if seed < 0:
        raise TokenizerError(f"--seed must be 0 or more, not {seed}.")
    if scheme == "bins":
        return scheme, dict(parse_bins(bins)) if bins else {}
    return scheme, {**({"k": k} if k is not None else {}), "seed": seed}


def bars_loader(strict_bars: bool = False,
                date_format: str | None = None) -> Callable[..., pl.DataFrame]:
    """:func:`load_bars` with ``--strict-bars`` and ``--date-format`` applied (for
    ``build_dataset``'s ``loader``). Its errors already name the flags."""
    load = functools.partial(load_bars, repair=not strict_bars, date_format=date_format)

    def loader(*args: Any, **kwargs: Any) -> pl.DataFrame:
        try:
            return load(*args, **kwargs)
        except BarsError as exc:
            raise BarsError(flag_wording(str(exc)), rule=exc.rule, rows=exc.rows) from exc

    return loader


def parse_horizons(text: str) -> tuple[int, ...]:
    """A ``--horizon`` value (``1,5,10``) as :func:`~candletok.core.horizons.check_horizons`
    reads it, or the one sentence that says why not (every command's ``--horizon``)."""
    try:
        return check_horizons(text)
    except CandletokError as exc:
        raise fail(f"--horizon takes bar counts like 1,5,10 ({exc})") from exc
