"""Training loop, evaluation, checkpoints and exact resume, on a small in-memory dataset
with the same interface as TokenDataset."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F  # noqa: N812

from candletok.core.errors import ModelError
from candletok.core.ids import BOS, N_SPECIAL, PAD, series_with_bos
from candletok.model.checkpoint import load_model, read_checkpoint
from candletok.model.evaluate import evaluate, evaluate_sums
from candletok.model.gpt import CandleGPT, GPTConfig
from candletok.model.train import TrainConfig, WindowSampler, lr_at, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


class MemDataset(torch.utils.data.Dataset):
    """In-memory stand-in for TokenDataset (a SplitSource without a folder or a
    vocabulary): non-overlapping windows per series, each candle a target once (targets
    already counted by the previous window masked). Written independently of the library's
    window layout, so that the scores are checked against a second implementation."""

    split, root, interval = "mem", None, None

    def __init__(self, series: list[np.ndarray], vocab_size: int, context: int,
                 fingerprint: str = "fp-test") -> None:
        self._series = [np.asarray(s, dtype=np.int64) for s in series]
        self.vocab_size, self.context, self.fingerprint = vocab_size, context, fingerprint
        self.tokens, self.bounds = series_with_bos(self._series)
        self.windows: list[tuple[np.ndarray, np.ndarray]] = []
        starts: list[int] = []
        for s, (a, _) in zip(self._series, self.bounds, strict=True):
            t = np.concatenate([[BOS], s])
            n = s.size
            for j in range(max(1, math.ceil(n / context))):
                off = min(j * context, max(0, n - context))
                x = np.full(context, PAD)
                y = np.full(context, -1)
                chunk = t[off:off + context + 1]
                x[:chunk.size - 1] = chunk[:-1]
                y[:chunk.size - 1] = chunk[1:]
                y[:max(0, j * context - off) if j else 0] = -1
                self.windows.append((x, y))
                starts.append(int(a) + off)
        self.starts = np.array(starts, dtype=np.int64)

    def series(self) -> list[np.ndarray]:
        return self._series

    def tokenizer(self) -> None:
        return None

    def __len__(self) -> int:
        return len(self.windows)

    def batch(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = zip(*(self.windows[int(i)] for i in ids), strict=True)
        return np.stack(xs), np.stack(ys)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.windows[i]
        return torch.from_numpy(x), torch.from_numpy(y)


def sticky_chain(n: int, rng: np.random.Generator, vocab: int = 16) -> np.ndarray:
    """A Markov chain that mostly steps to (last + 1): easy structure to learn."""
    x = np.empty(n, np.int64)
    x[0] = N_SPECIAL
    jump = rng.random(n) < 0.15
    new = rng.integers(N_SPECIAL, vocab, n)
    for i in range(1, n):
        x[i] = new[i] if jump[i] else N_SPECIAL + (x[i - 1] - N_SPECIAL + 1) % (vocab - N_SPECIAL)
    return x


def splits(context: int = 16, fingerprint: str = "fp-test") -> dict[str, MemDataset]:
    rng = np.random.default_rng(0)
    return {
        "train": MemDataset([sticky_chain(400, rng), sticky_chain(250, rng)], 16, context,
                            fingerprint),
        "val": MemDataset([sticky_chain(60, rng), sticky_chain(45, rng)], 16, context,
                          fingerprint),
        "test": MemDataset([sticky_chain(70, rng)], 16, context, fingerprint),
    }


def tiny_cfg(**kw: object) -> TrainConfig:
    base = dict(steps=40, batch_size=16, context=16, n_layer=1, n_head=2, n_embd=32,
                dropout=0.1, lr=1e-2, warmup_steps=5, eval_every=10, threads=1, seed=3)
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_lr_schedule_warms_up_then_decays_to_the_floor() -> None:
    cfg = TrainConfig(steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    lrs = [lr_at(s, cfg) for s in range(101)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert (np.diff(lrs[9:]) <= 0).all()
    assert lrs[100] == pytest.approx(0.1)


def test_sampler_is_a_function_of_seed_and_step_and_never_crosses_series() -> None:
    ds = splits()["train"]
    smp = WindowSampler(ds, 16)
    x1, y1 = smp.batch(7, 123, 64)
    x2, y2 = smp.batch(7, 123, 64)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert not np.array_equal(x1, smp.batch(7, 124, 64)[0])
    assert np.array_equal(x1[:, 1:], y1[:, :-1])
    # Two series over disjoint alphabets: a window that crossed would mix them.
    rng = np.random.default_rng(1)
    two = MemDataset([rng.integers(4, 10, 50), rng.integers(10, 16, 30)], 16, 16)
    x, _ = WindowSampler(two, 16).batch(0, 0, 256)
    low = ((x >= 4) & (x < 10)).any(1)
    high = (x >= 10).any(1)
    assert not (low & high).any()
    assert low.any() and high.any()
    assert ((x == BOS).sum(1) <= 1).all() and (x[:, 1:] != BOS).all()


def test_short_series_give_padded_windows() -> None:
    ds = MemDataset([np.array([4, 5, 6])], 8, 6)
    x, y = WindowSampler(ds, 6).batch(0, 0, 2)
    assert x[0].tolist() == [BOS, 4, 5, PAD, PAD, PAD]
    assert y[0].tolist() == [4, 5, 6, -1, -1, -1]


def test_loss_falls_and_model_is_scored_against_baselines(tmp_path: Path) -> None:
    res = train(splits(), tiny_cfg(steps=60), out=tmp_path / "m.pt", device="cpu")
    assert res.step == 60 and not res.interrupted
    assert res.history[-1]["loss"] < res.history[0]["loss"] - 0.3
    names = [r.name for r in res.table]
    assert names == ["CandleGPT", "uniform", "unigram", "ngram-1", "ngram-2", "ngram-3"]
    model_row, uni = res.table[0], res.table[1]
    assert model_row.val < uni.val and model_row.test < uni.test
    assert ("does NOT beat" in res.summary) != res.beats_best_ngram
    assert res.best_ngram in names
    assert 0 <= res.data_wait_share <= 1 and res.tokens_per_s > 0


@torch.no_grad()
def _direct_bits(m: CandleGPT, ds: MemDataset) -> tuple[float, int]:
    """Bits of every candle, each series run through the model in one piece."""
    bits, n = 0.0, 0
    for s in ds.series():
        x = torch.from_numpy(np.concatenate([[BOS], s[:-1]]))[None]
        logits = m(x)[0][0]
        logits[:, :N_SPECIAL] = -math.inf
        lp = F.log_softmax(logits, -1)[torch.arange(s.size), torch.from_numpy(s)]
        bits -= float(lp.sum()) / math.log(2)
        n += s.size
    return bits, n


def test_evaluate_matches_a_direct_computation() -> None:
    ds = splits(context=80)["val"]  # every series fits in one window
    torch.manual_seed(0)
    m = CandleGPT(GPTConfig(vocab_size=16, context=80, n_layer=1, n_head=1, n_embd=16)).eval()
    bits, n = _direct_bits(m, ds)
    assert evaluate(m, ds, batch_size=1) == pytest.approx(bits / n, rel=1e-5)
    # with windows shorter than the series, every candle is still counted exactly once
    short = MemDataset(ds.series(), 16, 16)
    assert evaluate_sums(m, short, batch_size=3)[1] == n


def test_checkpoint_round_trip_gives_identical_logits(tmp_path: Path) -> None:
    res = train(splits(), tiny_cfg(steps=12), out=tmp_path / "m.pt", device="cpu")
    loaded = load_model(tmp_path / "m.pt", dataset=splits()["val"])
    x = torch.randint(0, 16, (4, 16))
    assert res.model is not None
    assert torch.equal(res.model(x)[0], loaded(x)[0])
    assert loaded.fingerprint == "fp-test"
    assert loaded.meta["step"] == 12
    assert loaded.meta["metrics"]["table"][0]["name"] == "CandleGPT"


def test_resume_continues_the_same_run(tmp_path: Path) -> None:
    cfg = tiny_cfg(steps=30, eval_every=7)
    straight = train(splits(), cfg, out=tmp_path / "a.pt", device="cpu")
    half = train(splits(), cfg, out=tmp_path / "b.pt", device="cpu", until=15)
    assert half.step == 15
    mid = read_checkpoint(tmp_path / "b.pt")
    assert mid["step"] == 15
    resumed = train(splits(), None, out=tmp_path / "b.pt", device="cpu", resume=True)
    assert resumed.step == 30
    # the last-step weights and optimizer moments (the checkpoint's "model"/"optimizer")
    ca, cb = read_checkpoint(tmp_path / "a.pt"), read_checkpoint(tmp_path / "b.pt")
    assert ca["step"] == cb["step"] == 30
    assert all(torch.equal(ca["model"][k], cb["model"][k]) for k in ca["model"])
    ma, mb = ca["optimizer"]["state"], cb["optimizer"]["state"]
    assert all(torch.equal(ma[i]["exp_avg"], mb[i]["exp_avg"]) for i in ma)
    assert not torch.equal(mid["model"]["head_bias"], cb["model"]["head_bias"])  # it trained
    lr_resumed = {h["step"]: h["lr"] for h in resumed.history}
    assert all(lr_resumed[h["step"]] == h["lr"] for h in straight.history)
    # the interrupted run adds a checkpoint at step 15; the evaluation steps are the same
    assert [h["step"] for h in resumed.history] == [7, 14, 15, 21, 28, 30]
    assert [h["step"] for h in straight.history] == [7, 14, 21, 28, 30]


def test_refuses_a_dataset_with_another_vocabulary(tmp_path: Path) -> None:
    train(splits(), tiny_cfg(steps=3), out=tmp_path / "m.pt", device="cpu")
    other = splits(fingerprint="fp-other")
    with pytest.raises(ModelError, match="vocabulary") as e:
        load_model(tmp_path / "m.pt", dataset=other["val"])
    assert str(e.value).count(". ") == 0  # one sentence
    with pytest.raises(ModelError, match="vocabulary"):
        train(other, tiny_cfg(steps=6), out=tmp_path / "m.pt", device="cpu", resume=True)


def test_missing_or_foreign_checkpoints_raise_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="No model checkpoint"):
        train(splits(), tiny_cfg(), out=tmp_path / "none.pt", device="cpu", resume=True)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError):
        load_model(bad)


def _real_dataset(root: Path, bins: int = 3) -> Path:
    from candletok.dataset.build import build_dataset

    build_dataset(["AAA", "BBB"], root, scheme="bins", source="synthetic", overwrite=True,
                  tokenizer_kwargs=dict(gap_bins=bins, body_bins=3, upper_bins=2, lower_bins=2))
    return root


def test_trains_on_a_real_token_dataset_and_checks_its_vocabulary(tmp_path: Path) -> None:
    from candletok.dataset.torchdata import TokenDataset

    root = _real_dataset(tmp_path / "ds")
    res = train(root, tiny_cfg(steps=20, context=32), out=tmp_path / "m.pt", device="cpu")
    val = TokenDataset(root, "val", context=32)
    m = load_model(tmp_path / "m.pt", dataset=val)
    assert m.config.n_features == 4  # feature-aware embeddings from the dataset's vocab
    assert m.meta["vocab_json"] and m.fingerprint == val.fingerprint
    assert evaluate(m, val) == pytest.approx(res.table[0].val)
    # P(close up | token) learned from the train split's real closes travels with it.
    from candletok.model.updown import token_up_rates

    want = token_up_rates(TokenDataset(root, "train", context=32), val.tokenizer())
    assert want is not None and m.meta["token_up_rate"] == pytest.approx(want.tolist())
    assert res.model is not None and res.model.meta["token_up_rate"] == m.meta["token_up_rate"]
    other = TokenDataset(_real_dataset(tmp_path / "other", bins=5), "val", context=32)
    with pytest.raises(ModelError, match="vocabulary"):
        load_model(tmp_path / "m.pt", dataset=other)


@pytest.mark.parametrize("field,value,words", [
    ("steps", 0, "number of steps"), ("batch_size", -1, "batch size"),
    ("n_head", 0, "number of heads"), ("n_embd", 0, "width"), ("n_layer", 0, "layers"),
    ("eval_every", 0, "eval interval"), ("context", 100_000, "at most"),
    ("n_embd", 31, "multiple"), ("dropout", 1.5, "Dropout"), ("dropout", -0.1, "Dropout"),
    ("lr", -1.0, "learning rate"), ("lr", float("nan"), "learning rate"),
])
def test_bad_settings_are_one_model_error_before_any_data_is_read(
        field: str, value: float, words: str) -> None:
    cfg = tiny_cfg(**{field: value})
    with pytest.raises(ModelError, match=words):
        cfg.check()
    with pytest.raises(ModelError, match=words):  # not reached: the dataset does not exist
        train(Path("/nonexistent/dataset"), cfg, device="cpu")


def test_resume_past_the_requested_steps_and_bad_devices_are_clear_errors(
        tmp_path: Path) -> None:
    train(splits(), tiny_cfg(steps=4), out=tmp_path / "m.pt", device="cpu")
    with pytest.raises(ModelError, match="already at step 4"):
        train(splits(), tiny_cfg(steps=2), out=tmp_path / "m.pt", device="cpu", resume=True)
    with pytest.raises(ModelError, match="Unknown device"):
        load_model(tmp_path / "m.pt", device="tpu")
    m = load_model(tmp_path / "m.pt")
    for t in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ModelError, match="temperature"):
            m.generate(torch.full((1, 1), BOS), 2, temperature=t)


def test_a_checkpoint_whose_weights_do_not_fit_is_one_model_error(tmp_path: Path) -> None:
    train(splits(), tiny_cfg(steps=2), out=tmp_path / "m.pt", device="cpu")
    ck = torch.load(tmp_path / "m.pt", weights_only=True)
    ck["gpt_config"]["n_embd"] *= 2
    ck.pop("best_model", None)
    torch.save(ck, tmp_path / "bad.pt")
    with pytest.raises(ModelError, match="do not fit"):
        load_model(tmp_path / "bad.pt")


def test_a_corrupt_val_or_test_shard_stops_training(tmp_path: Path) -> None:
    """A split the manifest lists must open: a damaged one is an error, never skipped."""
    from candletok.core.errors import DatasetError

    root = _real_dataset(tmp_path / "ds")
    next((root / "test").glob("*.parquet")).write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="test"):
        train(root, tiny_cfg(steps=2, context=16), out=tmp_path / "m.pt", device="cpu")


# -- the seams for distributed training ---------------------------------------------------
def test_ranks_read_contiguous_shares_of_the_single_process_batch() -> None:
    """Rank r of w reads rows [r*n/w, (r+1)*n/w) of the (seed, step) global draw, so the
    ranks' batches laid end to end are the one-process batch (DDP follows it exactly)."""
    ds = splits()["train"]
    smp = WindowSampler(ds, 16)
    x0, y0 = smp.batch(7, 123, 64)
    # The (seed, step) stream: the window starts it draws are the batch's first inputs.
    u = np.random.default_rng((7, 123)).integers(0, int(smp.cum[-1]), size=64)
    s = np.searchsorted(smp.cum, u, side="right")
    start = smp.a[s] + (u - smp.first[s])
    assert np.array_equal(x0[:, 0], ds.tokens[start])
    for w in (2, 4):
        parts = [smp.batch(7, 123, 64, rank=r, world_size=w) for r in range(w)]
        assert all(p[0].shape == (64 // w, 16) for p in parts)
        assert np.array_equal(np.concatenate([p[0] for p in parts]), x0)
        assert np.array_equal(np.concatenate([p[1] for p in parts]), y0)
    with pytest.raises(ModelError, match="multiple of the number of processes"):
        smp.batch(7, 123, 10, rank=0, world_size=4)


def test_ranks_together_score_every_window_once() -> None:
    ds = splits(context=8)["val"]
    torch.manual_seed(0)
    m = CandleGPT(GPTConfig(vocab_size=16, context=8, n_layer=1, n_head=1, n_embd=16))
    for cap in (0, 5):
        bits, n = evaluate_sums(m, ds, batch_size=2, max_windows=cap)
        parts = [evaluate_sums(m, ds, 2, cap, rank=r, world_size=3) for r in range(3)]
        assert sum(c for _, c in parts) == n
        assert sum(b for b, _ in parts) == pytest.approx(bits, rel=1e-6)


# -- how a run stops ----------------------------------------------------------------------
def unlearnable(context: int = 16) -> dict[str, MemDataset]:
    """Train on the sticky chain, validate on uniform noise: the better the model learns
    the chain, the worse its val, so val is best early and early stopping must fire."""
    rng = np.random.default_rng(5)
    out = splits(context)
    out["val"] = MemDataset([rng.integers(N_SPECIAL, 16, 120)], 16, context)
    return out


def test_early_stopping_ends_the_run_without_changing_the_best_weights(tmp_path: Path) -> None:
    cfg = tiny_cfg(steps=80, eval_every=5, patience=2)
    early = train(unlearnable(), cfg, out=tmp_path / "e.pt", device="cpu")
    assert early.stop_reason == "early_stop" and not early.interrupted
    assert early.best_step is not None
    assert early.step == early.best_step + cfg.patience * cfg.eval_every < cfg.steps
    full = train(unlearnable(), tiny_cfg(steps=80, eval_every=5, patience=0),
                 out=tmp_path / "f.pt", device="cpu")
    assert full.stop_reason == "steps" and full.step == 80
    # the same run up to the stop (the schedule is the full one), so the same best weights
    def same(h: list[dict[str, float]]) -> list[tuple[float, ...]]:
        return [(e["step"], e["loss"], e["lr"], e["val_bpc"]) for e in h]  # not the timings

    assert same(early.history) == same(full.history[: len(early.history)])
    vals = [h["val_bpc"] for h in early.history]
    assert min(vals) == pytest.approx(vals[early.best_step // cfg.eval_every - 1])
    ck = read_checkpoint(tmp_path / "e.pt")
    assert ck["metrics"]["stop_reason"] == "early_stop" and ck["stale_evals"] == 2
    # resuming an early-stopped run asks for more patience instead of stopping again
    with pytest.raises(ModelError, match="patience"):
        train(unlearnable(), None, out=tmp_path / "e.pt", device="cpu", resume=True)
    more = train(unlearnable(), tiny_cfg(steps=80, eval_every=5, patience=0),
                 out=tmp_path / "e.pt", device="cpu", resume=True)
    assert more.step == 80 and more.stop_reason == "steps"


def test_default_steps_are_sized_to_the_training_candles(tmp_path: Path) -> None:
    from candletok.model.config import (
        AUTO_MAX_STEPS,
        AUTO_MIN_STEPS,
        AUTO_PASSES,
        auto_eval_every,
        auto_steps,
    )

    assert auto_steps(10, 32, 128) == AUTO_MIN_STEPS
    assert auto_steps(10**9, 32, 128) == AUTO_MAX_STEPS
    n = 200_000  # inside the clamp
    assert AUTO_MIN_STEPS < auto_steps(n, 32, 128) < AUTO_MAX_STEPS
    assert auto_steps(n, 32, 128) == math.ceil(AUTO_PASSES * n / (32 * 128))
    assert auto_steps(n, 64, 128) < auto_steps(n, 32, 128) < auto_steps(2 * n, 32, 128)
    assert [auto_eval_every(s) for s in (50, 200, 1000, 10**6)] == [10, 10, 50, 500]
    res = train(splits(), tiny_cfg(steps=None, eval_every=None), out=tmp_path / "m.pt",
                device="cpu", until=12)
    candles = sum(s.size for s in splits()["train"].series())
    assert res.steps == auto_steps(candles, 16, 16) and res.step == 12
    assert res.stop_reason == "until"
    every = auto_eval_every(res.steps)
    assert [h["step"] for h in res.history] == sorted({*range(every, 13, every), 12})
    saved = read_checkpoint(tmp_path / "m.pt")["train_config"]
    assert (saved["steps"], saved["eval_every"]) == (res.steps, every)  # a resume keeps them
    explicit = train(splits(), tiny_cfg(steps=7), out=tmp_path / "x.pt", device="cpu")
    assert explicit.steps == explicit.step == 7


def test_ctrl_c_stops_at_the_next_step_with_a_checkpoint(tmp_path: Path) -> None:
    import signal

    def press_ctrl_c(info: object) -> None:
        if getattr(info, "step", 0) == 3 and getattr(info, "phase", "") == "train":
            signal.raise_signal(signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)  # default, or ignored under a background shell
    res = train(splits(), tiny_cfg(steps=40, eval_every=10), out=tmp_path / "m.pt",
                device="cpu", progress=press_ctrl_c)
    assert res.interrupted and res.stop_reason == "interrupted"
    assert res.step == 4 and res.history[-1]["step"] == 4  # evaluated and saved there
    ck = read_checkpoint(tmp_path / "m.pt")
    assert ck["step"] == 4 and ck["metrics"]["stop_reason"] == "interrupted"
    assert signal.getsignal(signal.SIGINT) is before  # the caller's handler restored


# -- threads -------------------------------------------------------------------------------
def test_thread_count_rule() -> None:
    from candletok.model.runtime import resolve_threads

    assert resolve_threads(3, {"OMP_NUM_THREADS": "2"}, 8, 8) == 3  # --threads wins
    assert resolve_threads(0, {"OMP_NUM_THREADS": "2"}, 8, 8) == 2  # then OMP_NUM_THREADS
    assert resolve_threads(0, {}, 4, 8) == 4  # then torch's (user-set) count
    assert resolve_threads(0, {}, 16, 8) == 8  # never more than the cores we may use
    for bad in ("", "0", "-2", "four", " "):
        assert resolve_threads(0, {"OMP_NUM_THREADS": bad}, 3, 8) == 3


def test_training_honours_omp_num_threads(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from candletok.model.runtime import available_cores

    want = available_cores() + 1  # differs from every other rule's answer
    monkeypatch.setenv("OMP_NUM_THREADS", str(want))
    seen: set[int] = set()
    res = train(splits(), tiny_cfg(steps=2, threads=0), out=tmp_path / "m.pt", device="cpu",
                progress=lambda i: i.phase == "done" or seen.add(torch.get_num_threads()))
    assert res.threads == want and seen == {want}
    assert torch.get_num_threads() == 1  # the caller's setting is back
    res = train(splits(), tiny_cfg(steps=2, threads=2), out=tmp_path / "m.pt", device="cpu")
    assert res.threads == 2


# -- the command line under a pipe -----------------------------------------------------------
def _cli(*args: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "candletok.cli.main", *args]


def test_cli_train_logs_plain_lines_and_exits_130_when_interrupted(tmp_path: Path) -> None:
    """Under a pipe, ``train`` writes one plain line per evaluation and a last line whose
    val is the table's; Ctrl-C (SIGINT) saves a checkpoint and exits 130."""
    import os
    import re
    import signal
    import subprocess

    root = _real_dataset(tmp_path / "ds")
    m = str(tmp_path / "m.pt")
    env = {**os.environ, "CANDLETOK_OFFLINE": "1", "COLUMNS": "200"}
    p = subprocess.Popen(
        _cli("train", str(root), "--steps", "100000", "--eval-every", "2", "--patience", "0",
             "--context", "16", "--layers", "1", "--width", "16", "--heads", "2",
             "--threads", "1", "--device", "cpu", "--out", m),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert p.stdout is not None
        first = [p.stdout.readline() for _ in range(3)]  # training is under way: Ctrl-C
        p.send_signal(signal.SIGINT)
        rest, err = p.communicate(timeout=300)
    finally:
        p.kill()
    assert p.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    pat = r"step (\d+)/100000 loss \d+\.\d{3} val \d+\.\d{4} bits/candle tok/s [\d,]+"
    steps = [re.fullmatch(pat, ln.rstrip("\n")) for ln in first]
    assert [s.group(1) for s in steps if s] == ["2", "4", "6"], first
    out = "".join(first) + rest
    ck = read_checkpoint(m)
    assert 6 <= ck["step"] < 100000 and ck["metrics"]["stop_reason"] == "interrupted"
    assert f"step {ck['step']}/100000" in out  # the last line before the stop
    done = re.search(r"^done step (\d+)/100000 \(interrupted.*\) val \(step \d+ weights\) "
                     r"(\d+\.\d{4}) bits/candle$", out, re.M)
    row = re.search(r"CandleGPT\W+(\d+\.\d{4})", out)
    assert done and row and int(done.group(1)) == ck["step"]
    assert done.group(2) == row.group(1)  # one number, labelled


def test_a_resume_keeps_the_saved_configuration_but_the_four_run_knobs(tmp_path: Path) -> None:
    from candletok.model.train import resume_config

    train(splits(), tiny_cfg(steps=4, lr=5e-3), out=tmp_path / "m.pt", device="cpu")
    cfg = resume_config(tmp_path / "m.pt", steps=9, eval_every=None, patience=1, threads=None)
    assert (cfg.steps, cfg.eval_every, cfg.patience, cfg.lr, cfg.threads) == (9, 10, 1, 5e-3, 1)
    with pytest.raises(ModelError, match="keeps its saved lr"):
        cfg.merged_for_resume(lr=1.0)


def test_the_pieces_run_as_one_rank_of_several(tmp_path: Path) -> None:
    """The seams DDP plugs into: rank 1 steps on its half of the batch, its evaluation
    sums go through ``reduce`` (here: adding rank 0's share, as an all-reduce would), and it
    writes no checkpoint."""
    import threading

    from candletok.model.train import Ranks, init_run, open_splits, run_steps

    sp = open_splits(splits(), 16)
    cfg = tiny_cfg(steps=6, eval_every=3, eval_windows=0).sized_for(0)
    run = init_run(sp, cfg, tmp_path / "r1.pt", torch.device("cpu"), None)
    val = sp["val"]
    assert val is not None

    def all_reduce(mine: tuple[float, int]) -> tuple[float, int]:
        other = evaluate_sums(run.model, val, cfg.eval_batch, 0, rank=0, world_size=2)
        return mine[0] + other[0], mine[1] + other[1]

    stats = run_steps(run, sp, tmp_path / "r1.pt", torch.device("cpu"), 6, threading.Event(),
                      lambda i: None, Ranks(rank=1, world_size=2, reduce=all_reduce))
    assert stats.stop_reason == "steps" and run.step == 6
    assert not (tmp_path / "r1.pt").exists()  # only rank 0 writes
    assert run.last_val == pytest.approx(evaluate(run.model, val, cfg.eval_batch))
    solo = train(splits(), tiny_cfg(steps=6, eval_every=3), out=tmp_path / "r0.pt",
                 device="cpu")
    assert solo.history[-1]["loss"] != run.history[-1]["loss"]  # half the batch on rank 1
