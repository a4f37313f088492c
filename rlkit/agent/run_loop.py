"""The run loop every agent shares: one `learn` call around the agent's own `_train_step`.

Each turn, the agent's `_train_step` (one env step and its updates for DQN, SAC, TD3 and
REINFORCE; one rollout and its update for A2C and PPO), then what every agent does: log the
training scalars, evaluate on the validation seeds every `eval_interval` steps (keeping the best
agent, stopping early at `stop_at_return`), checkpoint every `checkpoint_interval` steps,
progress, callback.

The loop holds only what lasts one call (the run folder, the monitor, the cadences); what a
resumed run must find again (step counters, the run's start and end, the validation record,
the guard) lives on the agent and goes into its checkpoints.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from rlkit.agent.evaluation import seed_for_validation
from rlkit.agent.files import BEST_AGENT_FILE
from rlkit.agent.guard import DivergenceError
from rlkit.base.errors import ConfigError
from rlkit.base.malloc import keep_freed_memory
from rlkit.base.precision import denormals_flushed, torch_precision
from rlkit.base.threads import single_threaded_numpy_blas, torch_threads_for
from rlkit.io.recorder import RunMonitor
from rlkit.math.schedules import crossed


class CheckpointWarning(RuntimeWarning):
    """A periodic checkpoint could not be written; training went on."""


def check_intervals(checkpoint_interval: Any, keep_checkpoints: Any, callback_interval: Any):
    """The cadences of `learn`, as integers of at least 0, 1 and 1."""
    for name, value, least in (
        ("checkpoint_interval", checkpoint_interval, 0),
        ("keep_checkpoints", keep_checkpoints, 1),
        ("callback_interval", callback_interval, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"{name} must be an integer >= {least}, got {value!r}")


def check_total_steps(total_steps: Any) -> None:
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ConfigError(f"total_steps must be a positive integer, got {total_steps!r}")


class RunLoop:
    """One `learn` call of `agent` (see the module docstring)."""

    def __init__(
        self,
        agent: Any,
        run_dir: str | Path | None = None,
        progress: bool | str = False,
        checkpoint_interval: int = 0,
        keep_checkpoints: int = 3,
        extra_config: Mapping[str, Any] | None = None,
        callback: Callable[[Any], bool | None] | None = None,
        callback_interval: int = 1_000,
    ) -> None:
        check_intervals(checkpoint_interval, keep_checkpoints, callback_interval)
        self.agent = agent
        self.run_dir = run_dir
        self.progress = progress
        self.checkpoint_interval = checkpoint_interval
        self.keep_checkpoints = keep_checkpoints
        self.extra_config = extra_config
        self.callback = callback
        self.callback_interval = callback_interval

    def run(self, total_steps: int | None, resume: bool) -> None:
        agent = self.agent
        start_step, end_step = self._begin(total_steps, resume)
        agent._prepare_run(start_step, end_step)
        if agent._obs is None:
            agent._obs, _ = agent.env.reset(seed=agent.config.seed)
        monitor = self._monitor(end_step - start_step, resume)
        eval_interval = agent.config.eval_interval
        agent.stopped_early = False
        # torch's matmul precision is process-wide: the config's for the run, the caller's after.
        caller_precision = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision(
            torch_precision(agent.config.matmul_precision, agent.device)
        )
        if agent.device.type == "cpu":  # no page faults on each update's temporaries
            keep_freed_memory()
        # The caller's thread count for the updates, one thread for the rest (rlkit.base.threads).
        agent.update_threads = torch.get_num_threads()
        settings = contextlib.ExitStack()
        settings.enter_context(single_threaded_numpy_blas())
        settings.enter_context(torch_threads_for(1))
        settings.enter_context(denormals_flushed(agent.device))  # (rlkit.base.precision: why)
        try:
            while agent.global_step < end_step and not agent.stop_requested:
                previous_step = agent.global_step
                scalars = agent._train_step(monitor, start_step, end_step)
                if scalars is not None and monitor.recording:
                    monitor.record_scalars({**scalars, **agent.guard.scalars()}, agent.global_step)
                # Evaluate before checkpointing, so the checkpoint holds this evaluation's
                # outcome (best score, streak) and a resumed run picks the same best agent.
                evaluating = eval_interval and crossed(
                    previous_step, agent.global_step, eval_interval
                )
                if evaluating and self._validate(monitor):
                    end_step = self._stop_early()
                    continue
                self._checkpoint(previous_step)
                monitor.progress(agent.global_step)
                calling = self.callback is not None and crossed(
                    previous_step, agent.global_step, self.callback_interval
                )
                if calling and self.callback(agent) is False:
                    break
            # The end of the run is evaluated too, so the best agent is never worse on the
            # validation episodes than the final one.
            finished = agent.global_step >= end_step and not agent.stop_requested
            if eval_interval and finished and agent.validation.last_step != agent.global_step:
                self._validate(monitor)
        except DivergenceError:
            self._save_diverged(monitor)
            raise
        finally:
            settings.close()
            agent.update_threads = None
            torch.set_float32_matmul_precision(caller_precision)
            monitor.close(agent.global_step)

    def _begin(self, total_steps: int | None, resume: bool) -> tuple[int, int]:
        """(start step, end step) of this call; a resumed run keeps its original ones."""
        agent = self.agent
        if resume:
            if agent._run is None:
                raise ConfigError("nothing to resume: load a checkpoint first")
            return agent._run["start_step"], agent._run["start_step"] + agent._run["total_steps"]
        check_total_steps(total_steps)
        agent._run = {"start_step": agent.global_step, "total_steps": total_steps}
        agent._scheduler_state = None
        return agent.global_step, agent.global_step + total_steps

    def _monitor(self, total_steps: int, resume: bool) -> RunMonitor:
        """The run's monitor; with a run folder, also its config.yaml and TensorBoard config (a
        resumed run appends to the TensorBoard run from the checkpoint's step on)."""
        agent = self.agent
        run_config = {
            "agent": agent.name,
            "total_steps": total_steps,
            **(self.extra_config or {}),
            "checkpoint_interval": self.checkpoint_interval,
            **agent.config.to_dict(),
        }
        end_step = agent._run["start_step"] + agent._run["total_steps"]
        return RunMonitor(
            self.run_dir, end_step, self.progress, run_config, agent.metric_tags,
            agent.global_step,
            # The interrupted run logged everything up to the checkpoint's step; what it logged
            # after that is superseded by this run.
            resume_step=agent.global_step + 1 if resume else None,
        )  # fmt: skip

    def _validate(self, monitor: RunMonitor) -> bool:
        """A periodic evaluation on the validation seeds: log it, keep the best agent so far in
        run_dir/best_agent.safetensors. True once `stop_at_return` has been reached
        `stop_patience` times in a row."""
        agent, cfg = self.agent, self.agent.config
        started = time.perf_counter()
        seed = seed_for_validation(cfg.seed, cfg.eval_seed)
        result = agent.evaluate(cfg.eval_episodes, seed=seed, deterministic=cfg.eval_deterministic)
        validation = agent.validation
        improved = validation.update(result.mean_return, agent.global_step, cfg.stop_at_return)
        if improved and self.run_dir is not None:
            evaluation = {**result.summary(), "seed": seed, "step": agent.global_step}
            agent.save(Path(self.run_dir) / BEST_AGENT_FILE, evaluation=evaluation)
        scalars = {
            "eval/mean_return": result.mean_return,
            "eval/std_return": result.std_return,
            "eval/mean_length": result.mean_length,
            "eval/best_mean_return": validation.best_mean,
        }
        monitor.record_evaluation(scalars, agent.global_step, time.perf_counter() - started)
        return cfg.stop_at_return is not None and validation.streak >= cfg.stop_patience

    def _stop_early(self) -> int:
        """stop_at_return was reached: the run ends here, and its checkpoint says so (a
        resumed run does not train on). Returns the new end step."""
        agent = self.agent
        agent.stopped_early = True
        agent._run["total_steps"] = agent.global_step - agent._run["start_step"]
        if self.run_dir is not None and self.checkpoint_interval > 0:
            agent.save_checkpoint(self.run_dir, self.keep_checkpoints)
        return agent.global_step

    def _checkpoint(self, previous_step: int) -> None:
        """Every `checkpoint_interval` steps, a full training checkpoint in
        run_dir/checkpoints/.

        A write that fails (disk full, quota, permissions) does not end the run: the previous
        checkpoints are intact (atomic writes), the failure is reported as a warning, and the
        next interval tries again."""
        agent, interval = self.agent, self.checkpoint_interval
        due = self.run_dir is not None and interval > 0
        if due and crossed(previous_step, agent.global_step, interval):
            try:
                agent.save_checkpoint(self.run_dir, self.keep_checkpoints)
            except OSError as error:
                warnings.warn(
                    f"checkpoint at step {agent.global_step} not written ({error}); the "
                    "previous checkpoints are intact and training goes on",
                    CheckpointWarning,
                    stacklevel=2,
                )

    def _save_diverged(self, monitor: RunMonitor) -> None:
        """The guard gave up and put the last good state back: log its final counts and keep
        that state as a checkpoint."""
        agent = self.agent
        if monitor.recording:
            monitor.record_scalars(agent.guard.scalars(), agent.global_step)
        if self.run_dir is not None:
            agent.save_checkpoint(self.run_dir, self.keep_checkpoints)
