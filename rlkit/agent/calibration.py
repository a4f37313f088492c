"""Torch's thread count and float32 product kernels for a training run, measured on the machine
that runs it, like cuDNN's benchmark mode.

Whether a second thread helps depends on the CPU and on the agent's sizes: on a 2-core Intel
Xeon (AVX-512), DQN CartPole's update ran 1.12x faster on two threads and the RL Zoo's DQN and
PPO CartPole configs ran slower on two; on an AMD EPYC Zen 3 SAC's 256-wide update ran 1.36x
faster. And a second thread costs a lot when another process holds a core: OpenMP's threads
spin-wait for it on every parallel product (`rlkit train configs/dqn_cartpole.yaml --steps
10000` took 23 s on two threads beside a busy loop, 11 s on one, 10 s quiet).

So `rlkit train` without `torch_threads` times the agent's real training (a throwaway copy of
the agent, learning from its own environments, before the run starts) on one thread and on
every core, and takes more than one thread only where that is at least MARGIN times faster:
a gain worth the risk of a busy core. The choice is cached per CPU model, torch version and
config (~/.cache/rlkit/threads.json, or $XDG_CACHE_HOME/rlkit), written into the run's
config.yaml as `torch_threads`, and a resumed run keeps it: the thread count changes how some
products round, so one run uses one count throughout. The count is the updates' (rlkit.base.
threads: acting and evaluation run on one thread).

Where the config names no `matmul_precision`, oneDNN's float32 kernels beat torch's default
path on a 256x256 product here and keep float32's error (rlkit.base.precision), the same timing
decides between them (`onednn`) and the default path (`highest`); bfloat16 products are never
chosen here, only by the user.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlkit.base.device import describe_cpu
from rlkit.base.files import atomic_write_bytes
from rlkit.base.precision import onednn_keeps_float32, onednn_product_speedup

MARGIN = 1.3  # more threads must be this much faster than one to be chosen
# oneDNN's float32 kernels must be this much faster to be chosen (rlkit.base.precision); a
# busy core costs them nothing, but their per-call cost makes small products slower.
PRECISION_MARGIN = 1.1
# Keys that do not change what a training step costs.
_NOT_WORKLOAD = frozenset({
    "seed", "device", "eval_interval", "eval_episodes", "eval_seed", "eval_deterministic",
    "stop_at_return", "stop_patience", "log_interval",
})  # fmt: skip


def cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rlkit" / "threads.json"


def workload_key(agent: str, config: dict[str, Any]) -> str:
    """What a calibration holds for: this CPU, this torch, this agent and config."""
    workload = {k: v for k, v in config.items() if k not in _NOT_WORKLOAD}
    digest = hashlib.sha256(json.dumps(workload, sort_keys=True).encode()).hexdigest()[:16]
    return f"{describe_cpu()} | torch {torch.__version__} | {agent} {digest}"


def choose_threads(seconds: dict[int, float], margin: float = MARGIN) -> int:
    """One thread, unless the fastest count is at least `margin` times faster than one."""
    fastest = min(seconds, key=seconds.get)
    return fastest if seconds[1] >= margin * seconds[fastest] else 1


def choose(seconds: dict[tuple[int, str], float], margin: float = MARGIN) -> tuple[int, str]:
    """(threads, precision) from seconds per (threads, precision): per precision the thread
    count by `choose_threads`; onednn over highest only where it is PRECISION_MARGIN faster."""
    best = {}
    for precision in {p for _, p in seconds}:
        per_thread = {n: s for (n, p), s in seconds.items() if p == precision}
        threads = choose_threads(per_thread, margin) if 1 in per_thread else min(per_thread)
        best[precision] = (threads, per_thread[threads])
    if "onednn" in best and best["onednn"][1] * PRECISION_MARGIN <= best["highest"][1]:
        return best["onednn"][0], "onednn"
    return best["highest"][0], "highest"


def time_training(
    agent_cls: type,
    config: dict[str, Any],
    candidates: list[tuple[int, str]],
    budget: float = 0.25,
) -> dict[tuple[int, str], float]:
    """Seconds per env step of `learn` at each (threads, matmul_precision), on a throwaway agent
    of the same config (alternated twice, the faster round kept). The caller's random states
    and thread count are left as they were."""
    threads = torch.get_num_threads()
    numpy_state, python_state = np.random.get_state(), random.getstate()
    seconds = {candidate: float("inf") for candidate in candidates}
    with torch.random.fork_rng(devices=[]):
        agent = agent_cls(config=_calibration_config(config))  # (a bad config fails here first)
        print(  # (a large CNN's rollouts take a minute or so: say why nothing moves yet)
            f"rlkit: timing {len(candidates)} thread and precision settings on this CPU for "
            "this config (once, then cached)",
            file=sys.stderr,
            flush=True,
        )
        try:
            agent.learn(_warm_up_steps(agent.config))
            chunk = _chunk_steps(agent.config)
            for _ in range(2):
                for n, precision in candidates:
                    torch.set_num_threads(n)
                    agent.config.matmul_precision = precision
                    steps, start = 0, time.perf_counter()
                    while time.perf_counter() - start < budget:
                        agent.learn(chunk)
                        steps += chunk
                    seconds[n, precision] = min(
                        seconds[n, precision], (time.perf_counter() - start) / steps
                    )
        finally:
            agent.close()
            torch.set_num_threads(threads)
            np.random.set_state(numpy_state)
            random.setstate(python_state)
    return seconds


def calibrate(
    agent_cls: type,
    config: dict[str, Any],
    cores: int,
    threads: int | None = None,
    precision: str | None = None,
) -> tuple[int, str, str]:
    """(threads, matmul_precision, how they were chosen, in a few words) for training `config`
    on this machine; a value given is kept, the others measured, or read from the cache when
    this CPU, torch and config were measured before."""
    path = cache_path()
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    cache = cache if isinstance(cache, dict) else {}
    thread_options = [threads] if threads else sorted({1, cores})
    precision_options = [precision] if precision else ["highest"]
    known = len(cache)
    if not precision and _onednn_is_a_candidate(cache):
        precision_options.append("onednn")
    if len(thread_options) * len(precision_options) == 1:
        if len(cache) != known:
            _write_cache(path, cache)  # the oneDNN check: once per machine
        return thread_options[0], precision_options[0], "nothing to measure"
    key = f"{workload_key(agent_cls.name, config)} | threads {threads} | precision {precision}"
    entry = cache.get(key)
    if (
        isinstance(entry, dict)
        and entry.get("threads") in thread_options
        and entry.get("matmul_precision") in precision_options
    ):
        return entry["threads"], entry["matmul_precision"], f"measured before, cached in {path}"
    candidates = [(n, p) for p in precision_options for n in thread_options]
    seconds = time_training(agent_cls, config, candidates)
    chosen_threads, chosen_precision = choose(seconds)
    timings = ", ".join(f"{n} {p}: {s * 1e6:.0f} us" for (n, p), s in seconds.items())
    cache[key] = {
        "threads": chosen_threads,
        "matmul_precision": chosen_precision,
        "us_per_step": {f"{n} {p}": s * 1e6 for (n, p), s in seconds.items()},
    }
    _write_cache(path, cache)
    return chosen_threads, chosen_precision, f"measured per env step of training, {timings}"


def _onednn_is_a_candidate(cache: dict[str, Any]) -> bool:
    """Whether oneDNN's float32 kernels are worth timing a config for: they beat the default
    path on a 256x256 product here (where they lose there, they lose on every run) and keep
    float32's error. Measured once per CPU and torch, into `cache`."""
    key = f"{describe_cpu()} | torch {torch.__version__} | oneDNN float32"
    entry = cache.get(key)
    if not (isinstance(entry, dict) and isinstance(entry.get("candidate"), bool)):
        speedup = onednn_product_speedup()
        keeps = onednn_keeps_float32() if speedup >= PRECISION_MARGIN else None
        entry = {"product_speedup": speedup, "keeps_float32": keeps, "candidate": bool(keeps)}
        cache[key] = entry
    return entry["candidate"]


def _write_cache(path: Path, cache: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(cache, indent=1, sort_keys=True).encode())
    except OSError:
        pass  # no cache: the next run measures again


def _calibration_config(config: dict[str, Any]) -> dict[str, Any]:
    """The run's config for a throwaway agent: no evaluation, the first update soon, a replay
    buffer no larger than needed."""
    data = dict(config, eval_interval=0, stop_at_return=None)
    if "learning_starts" in data:
        data["learning_starts"] = min(data["learning_starts"], 2 * data["batch_size"])
        data["buffer_size"] = min(data["buffer_size"], 50_000)
    return data


def _chunk_steps(cfg: Any) -> int:
    """Env steps that hold at least one update: a training call, or a rollout."""
    if hasattr(cfg, "train_freq"):
        per_call = cfg.train_freq if cfg.train_freq_unit == "step" else 200
        return max(per_call, 16) * cfg.n_envs
    if hasattr(cfg, "batch_episodes"):  # REINFORCE: whole episodes
        return 1_000
    return cfg.n_steps * cfg.n_envs


def _warm_up_steps(cfg: Any) -> int:
    return getattr(cfg, "learning_starts", 0) + _chunk_steps(cfg)
