"""A next-token model (CandleGPT, or any :class:`~candletok.model.arch.TokenModel`: the
CandleLSTM baseline) as a forecaster for the point-in-time replay.

h = 1 comes from the model's next-token distribution at every origin, pushed through the
token table (per-token up rates learned on train, representative ranges and returns). To
score every origin without one forward pass per candle, each series is cut into windows
of ``context`` tokens that start every ``context / 2`` tokens, and each origin's forecast
is read from the window where it has at least half a context of history (the first
window of a series serves its first half). The model is causal (attention, or the
recurrence), so later tokens in a window never reach an earlier position's output: the
forecast at t reads only tokens up to t. Nothing here asks which body the model has.

h > 1 comes from sampled continuations on a seeded subsample of origins (``subsample``
origins, ``samples`` paths each, the last ``sample_context`` tokens as context), rebuilt
into prices with the causal scale recomputed along each path; P(up) and the return
quantiles are the sample frequencies. Sampling is costly without a key-value cache, which
is why it runs on a subsample, reported with the scores.

A checkpoint with calendar inputs reads each candle's calendar ids beside its token
(computed from the history's timestamps); the sampled bars get the ids of the times
:func:`~candletok.tokenize.exchange.future_times` derives from the origin's own history up
to t and its symbol's exchange calendar (the weekly grid for 24-hour markets), so nothing
after t is read but the exchange's published holidays.

A checkpoint with level inputs reads each candle's :mod:`~candletok.tokenize.levels` row,
computed once per history from its ``high, low, prev_close, scale`` (each series from its
first row, so a val origin's inputs see train's bars before it); sampled bars hold the
row of the origin's bar (:meth:`CandleGPT.generate`: they are not rebuilt inside the loop).
"""

from __future__ import annotations

import numpy as np
import torch

from candletok.core.ids import BOS, N_SPECIAL, PAD
from candletok.core.progress import Progress, progress
from candletok.evaluation.forecasters import (
    CRPS_LEVELS,
    CRPS_POINTS,
    LEVELS,
    DistChunks,
    Forecast,
    TokenTable,
    bits_from,
    chunk_size,
    forecast_from,
    pick_subsample,
)
from candletok.evaluation.history import History
from candletok.model.arch import TokenModel
from candletok.model.checkpoint import check_fingerprint
from candletok.model.evaluate import MODEL_NAME
from candletok.model.updown import up_probability
from candletok.tokenize.calendar import calendar_ids
from candletok.tokenize.exchange import exchange_for_symbol, future_times
from candletok.tokenize.levels import level_inputs


class GPTForecaster:
    """A model at h = 1 for every origin, and at h > 1 by sampling on a subsample; named
    by the model's ``name`` unless ``name`` is given."""

    learned = True

    def __init__(self, model: TokenModel, samples: int = 32, subsample: int = 100,
                 sample_context: int = 24, max_horizon: int = 10, seed: int = 0,
                 batch: int = 64, name: str | None = None, answer: bool = True) -> None:
        self.model = model
        self.name = name or getattr(model, "name", MODEL_NAME)
        # the answer's own forecaster: what `predict` shows is what this scores (declared,
        # so the calibration file names it without anyone knowing what it is called); a
        # model scored beside it for comparison (`evaluate --compare`) has no role
        self.roles = frozenset({"answer"}) if answer else frozenset()
        self.samples = max(1, int(samples))
        self.subsample = max(1, int(subsample))
        self.max_horizon = max(1, int(max_horizon))
        # context + sampled candles stay inside the trained context: no position shifts
        self.sample_context = max(1, min(int(sample_context),
                                         model.config.context - self.max_horizon))
        self.seed = int(seed)
        self.batch = max(1, int(batch))
        self.table: TokenTable | None = None
        self._paths_of: History | None = None
        self._paths: dict[int, np.ndarray] = {}
        self._cal_of: History | None = None
        self._cal = np.zeros((0, 0), np.int64)
        self._lv_of: History | None = None
        self._lv = np.zeros((0, 0), np.float32)
        #: exchange calendar of the sampled bars' times: "auto" (each symbol's own, by
        #: exchange_for_symbol), a MIC, or None for the series' weekly grid
        self.exchange: str | None = "auto"

    def fit(self, hist: History) -> None:
        check_fingerprint(getattr(self.model, "fingerprint", None), hist.tok)
        self.table = TokenTable.build(hist, up_probability(self.model, hist.tok))
        self._paths_of, self._paths = None, {}

    # -- calendar ids ----------------------------------------------------------------------
    def _row_calendar(self, hist: History) -> np.ndarray | None:
        """(hist.n, n_fields) calendar ids of every candle (each from its own timestamp),
        computed once per history; None when the model reads no calendar inputs."""
        spec = self.model.calendar
        if spec is None:
            return None
        if self._cal_of is not hist:
            self._cal_of, self._cal = hist, calendar_ids(hist.ts, spec)
        return self._cal

    def _gather_calendar(self, hist: History, src: np.ndarray, real: np.ndarray
                         ) -> torch.Tensor | None:
        """Calendar ids of history rows ``src`` where ``real`` (unknown elsewhere: BOS,
        PAD), as a (..., n_fields) tensor on the model's device; None without them."""
        rows_cal = self._row_calendar(hist)
        if rows_cal is None or self.model.calendar is None:
            return None
        ids = rows_cal[np.clip(src, 0, hist.n - 1)]
        ids = np.where(real[..., None], ids, self.model.calendar.unknown)
        return torch.from_numpy(ids.astype(np.int64)).to(self.model.device)

    def _future_calendar(self, hist: History, rows: np.ndarray, n: int) -> torch.Tensor:
        """(len(rows), n, n_fields) ids of the ``n`` bars after each origin, their times
        from the origin's own series up to the origin (one small call per origin: this
        runs on the sampled subsample only)."""
        spec = self.model.calendar
        assert spec is not None
        k = hist.series[rows]
        first = hist.starts[k]
        ex = [exchange_for_symbol(hist.symbols[i]) if self.exchange == "auto"
              else self.exchange for i in k.tolist()]
        ids = [calendar_ids(future_times(hist.ts[a:r + 1], n, spec, e).ts, spec)
               for a, r, e in zip(first.tolist(), rows.tolist(), ex, strict=True)]
        return torch.from_numpy(np.stack(ids)).to(self.model.device)

    def _gather_levels(self, hist: History, src: np.ndarray, real: np.ndarray
                       ) -> torch.Tensor | None:
        """Level inputs (..., levels) of history rows ``src`` where ``real`` (zeros
        elsewhere: BOS, PAD) on the model's device; None when the model reads none. The
        rows' inputs are computed once per history."""
        if not self.model.config.levels:
            return None
        if self._lv_of is not hist:
            lens = hist.ends - hist.starts
            self._lv_of = hist
            self._lv = level_inputs(hist.high, hist.low, hist.prev_close, hist.scale,
                                    lens).astype(np.float32)
        lv = np.where(real[..., None], self._lv[np.clip(src, 0, hist.n - 1)], np.float32(0))
        return torch.from_numpy(lv).to(self.model.device)

    # -- h = 1 ---------------------------------------------------------------------------
    def _windows(self, hist: History, rows: np.ndarray) -> tuple[
            np.ndarray, np.ndarray, np.ndarray, torch.Tensor | None, torch.Tensor | None]:
        """For each origin, the index of its window among the unique windows, and its
        position in it; the unique windows' token matrix (W, context) and their calendar
        ids (W, context, n_fields; None without calendar inputs) and level inputs (W,
        context, levels; None without)."""
        ctx = self.model.config.context
        half = max(1, ctx // 2)
        k = hist.series[rows]
        q = rows - hist.starts[k] + 1  # position of the origin's candle after the BOS
        w = np.where(q < ctx, 0, ((q - ctx) // half + 1) * half)
        key = k * (hist.n + 1) + w
        ukey, inv = np.unique(key, return_inverse=True)
        uk, uw = ukey // (hist.n + 1), ukey % (hist.n + 1)
        j = uw[:, None] + np.arange(ctx)[None, :]  # positions in the BOS-led sequence
        src = hist.starts[uk][:, None] + j - 1
        seq_len = (hist.ends - hist.starts + 1)[uk][:, None]
        toks = np.where(j == 0, BOS, hist.token[np.clip(src, 0, hist.n - 1)])
        toks = np.where(j < seq_len, toks, PAD)
        real = (j > 0) & (j < seq_len)
        cal = self._gather_calendar(hist, src, real)
        return inv, q - w, toks.astype(np.int64), cal, self._gather_levels(hist, src, real)

    @torch.no_grad()
    def _dist(self, hist: History, rows: np.ndarray) -> np.ndarray:
        """(n, n_candle_tokens) next-candle distributions at the origins ``rows``."""
        V = self.model.config.vocab_size
        out = np.zeros((rows.size, V - N_SPECIAL))
        if rows.size == 0:
            return out
        inv, at, toks, cal, lv = self._windows(hist, rows)
        dev = self.model.device
        self.model.eval()
        for a in range(0, toks.shape[0], self.batch):
            # every forward pass has exactly ``batch`` windows (the last padded with
            # copies of its first), so a window's logits never depend on how many others
            # were asked with it: the Predictor's one origin reads the same bits as the
            # evaluation's thousands (kernels are chosen by shape)
            tb = toks[a:a + self.batch]
            fill = self.batch - tb.shape[0]
            xb = torch.from_numpy(np.concatenate([tb, np.repeat(tb[:1], fill, 0)])).to(dev)
            cb = None if cal is None else cal[a:a + self.batch]
            if cb is not None and fill:
                cb = torch.cat([cb, cb[:1].repeat(fill, *([1] * (cb.dim() - 1)))])
            vb = None if lv is None else lv[a:a + self.batch]
            if vb is not None and fill:
                vb = torch.cat([vb, vb[:1].repeat(fill, 1, 1)])
            logits = self.model(xb, cal=cb, lv=vb)[0].double()  # float64: sums to 1
            sel = np.flatnonzero((inv >= a) & (inv < a + self.batch))
            lg = logits[torch.from_numpy(inv[sel] - a).to(dev), torch.from_numpy(at[sel]).to(dev)]
            lg[:, :N_SPECIAL] = float("-inf")
            out[sel] = torch.softmax(lg, dim=-1)[:, N_SPECIAL:].cpu().numpy()
        return out

    def dists(self, hist: History, rows: np.ndarray) -> DistChunks:
        """Next-candle distributions at ``rows``, chunk by chunk (bounded memory)."""
        rows = np.asarray(rows, dtype=np.int64)
        step = chunk_size(self.model.config.vocab_size - N_SPECIAL)
        for a in range(0, rows.size, step):
            yield slice(a, a + step), self._dist(hist, rows[a:a + step])

    def bits(self, hist: History, rows: np.ndarray) -> np.ndarray:
        return bits_from(hist, rows, self.dists(hist, rows))

    # -- h > 1 ---------------------------------------------------------------------------
    def sample_returns(self, hist: History, rows: np.ndarray) -> np.ndarray:
        """(n, samples, max_horizon) forward log returns of sampled continuations (the
        close of :meth:`sample_logs`)."""
        return self.sample_logs(hist, rows)[:, 3]

    @torch.no_grad()
    def sample_logs(self, hist: History, rows: np.ndarray) -> np.ndarray:
        """(n, 4, samples, max_horizon) sampled continuations as ln(price / the origin's
        close) of each sampled bar's open, high, low and close (the stop and target odds
        read the highs and lows, the direction and quantiles the closes).

        The first candle is drawn from the h = 1 distribution (read with the long
        context); the rest by the model on the last ``sample_context`` tokens, which
        stays within the trained context so positions never shift."""
        L, S, H = self.sample_context, self.samples, self.max_horizon
        q = rows - hist.starts[hist.series[rows]] + 1
        lens = np.minimum(L, q + 1)
        out = np.empty((rows.size, 4, S, H))
        dev = self.model.device
        gen = torch.Generator(device=dev).manual_seed(self.seed)
        first = torch.from_numpy(self._dist(hist, rows)).to(dev)  # a subsample: small
        chunk = max(1, 2048 // S)  # origins per generate call: bounded memory
        groups = [np.flatnonzero(lens == length) for length in np.unique(lens)]
        calls = sum(-(-g.size // chunk) for g in groups)
        with progress(f"{self.name} paths", calls) as bar:
            for grp in groups:
                self._sample_group(hist, rows, grp, lens, chunk, first, gen, out, bar)
        return out

    def _sample_group(self, hist: History, rows: np.ndarray, grp: np.ndarray,
                      lens: np.ndarray, chunk: int, first: torch.Tensor,
                      gen: torch.Generator, out: np.ndarray, bar: Progress) -> None:
        """Sample the origins ``grp`` (one context length) into ``out``, ``chunk`` origins
        per generate call."""
        S, H, dev = self.samples, self.max_horizon, self.model.device
        length = lens[grp[0]]
        for a in range(0, grp.size, chunk):
            g = grp[a:a + chunk]
            # the last L candles, or the BOS and every candle near a series' start
            ctx = torch.from_numpy(hist.contexts(rows[g], int(length))).to(dev)
            t1 = torch.multinomial(first[torch.from_numpy(g).to(dev)], S, replacement=True,
                                   generator=gen) + N_SPECIAL  # (g, S)
            idx = torch.cat([ctx.repeat_interleave(S, dim=0), t1.reshape(-1, 1)], dim=1)
            cal = self._path_calendar(hist, rows[g], int(length), H)
            src = rows[g][:, None] - np.arange(int(length) - 1, -1, -1)[None, :]
            lv = self._gather_levels(hist, src, src >= hist.starts[hist.series[rows[g]]][:, None])
            if H > 1:
                idx = self.model.generate(
                    idx, H - 1, generator=gen,
                    cal=None if cal is None else cal.repeat_interleave(S, dim=0),
                    lv=None if lv is None else lv.repeat_interleave(S, dim=0))
            new = idx[:, ctx.shape[1]:].cpu().numpy()
            c0 = np.repeat(hist.close[rows[g]], S)
            s0 = np.repeat(hist.next_scale[rows[g]], S)
            paths = hist.tok.rebuild_paths(new, c0, s0)
            for j, key in enumerate(("open", "high", "low", "close")):
                out[g, j] = np.log(paths[key] / c0[:, None]).reshape(g.size, S, H)
            bar.advance()

    def _path_calendar(self, hist: History, rows: np.ndarray, length: int,
                       H: int) -> torch.Tensor | None:
        """(len(rows), length + H, n_fields) ids of each origin's ``length``-token context
        (as :meth:`History.contexts` lays it out) and of its ``H`` sampled bars."""
        if self.model.calendar is None:
            return None
        src = rows[:, None] - np.arange(length - 1, -1, -1)[None, :]
        ctx = self._gather_calendar(hist, src, src >= hist.starts[hist.series[rows]][:, None])
        assert ctx is not None
        return torch.cat([ctx, self._future_calendar(hist, rows, H)], dim=1)

    def path_logs(self, hist: History, rows: np.ndarray) -> np.ndarray:
        """(n, 4, samples, max_horizon) sampled paths at ``rows`` (:meth:`sample_logs`),
        generated once per origin and history: every horizon, and the stop and target
        odds, read the same paths."""
        rows = np.asarray(rows, dtype=np.int64)
        if self._paths_of is not hist:
            self._paths_of, self._paths = hist, {}
        todo = np.array([r for r in rows.tolist() if r not in self._paths], dtype=np.int64)
        if todo.size:
            for r, v in zip(todo.tolist(), self.sample_logs(hist, todo), strict=True):
                self._paths[r] = v
        return np.stack([self._paths[r] for r in rows.tolist()]) if rows.size else \
            np.zeros((0, 4, self.samples, self.max_horizon))

    def _returns(self, hist: History, rows: np.ndarray) -> np.ndarray:
        """Sampled forward log returns at ``rows`` (the closes of :meth:`path_logs`)."""
        return self.path_logs(hist, rows)[:, 3]

    def forecast(self, hist: History, rows: np.ndarray, horizon: int) -> Forecast | None:
        if self.table is None:
            self.fit(hist)
        assert self.table is not None
        rows = np.asarray(rows, dtype=np.int64)
        if horizon == 1:
            return forecast_from(rows, self.dists(hist, rows), self.table,
                                 hist.next_scale[rows])
        if horizon > self.max_horizon:
            self.max_horizon, self._paths_of = horizon, None
        sub = pick_subsample(hist, rows, self.subsample, self.seed)
        ret = self._returns(hist, sub)[:, :, horizon - 1]
        return Forecast(sub, p_up=(ret > 0).mean(axis=1),
                        quantiles=np.quantile(ret, LEVELS, axis=1).T.reshape(-1, len(LEVELS)),
                        qgrid=np.quantile(ret, CRPS_LEVELS, axis=1).T.reshape(-1, CRPS_POINTS))

    def describe(self) -> str:
        return (f"h>1 from {self.samples} sampled paths at up to {self.subsample} origins "
                f"per split ({self.sample_context}-token context, seed {self.seed})")

