"""The one place that knows about TensorBoard: a thin recorder over SummaryWriter.

Agents call `recorder.scalar("train/td_loss", value, step)` with namespaced tags; the recorder
writes real TensorBoard event files into the run folder, plus the config as text and hparams.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from rlkit.base.files import atomic_write_bytes
from rlkit.io.progress import JsonLinesView, Progress, TqdmView


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optimizer": {"lr": 1e-3}} -> {"optimizer.lr": 1e-3}."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


class Recorder:
    """Writes scalars, text and hparams for one run into `run_dir`."""

    def __init__(self, run_dir: str | Path, purge_step: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # purge_step: a resumed run tells TensorBoard to drop what the interrupted one logged
        # from that step on, so no step appears twice.
        self.writer = SummaryWriter(log_dir=str(self.run_dir), flush_secs=10, purge_step=purge_step)

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, float(value), step)

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, float(value), step)

    def config(self, config: Mapping[str, Any], metric_tags: list[str]) -> None:
        """The resolved config as YAML text and as TensorBoard hparams (same run folder)."""
        text = yaml.safe_dump(dict(config), sort_keys=False)
        # Markdown code block so TensorBoard's text plugin keeps the indentation.
        self.writer.add_text("config", "```\n" + text + "```", 0)
        hparam_values = {
            key: value if isinstance(value, bool | int | float | str) else str(value)
            for key, value in flatten(config).items()
        }
        # SummaryWriter.add_hparams would create a second run folder; write the three hparams
        # summaries into this one instead, so the HParams dashboard reads this run's scalars.
        experiment, session_start, session_end = hparams(
            hparam_values, {tag: 0.0 for tag in metric_tags}
        )
        file_writer = self.writer._get_file_writer()
        for summary in (experiment, session_start, session_end):
            file_writer.add_summary(summary)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class RunMonitor:
    """What every agent's training loop reports, in one place: finished episodes (TensorBoard
    and progress bar), interval scalars with steps/s, the config of the run.

    With `run_dir=None` nothing is written (`recording` is False); the progress bar still runs
    when asked for. With `resume_step`, the run folder already holds the config and the events
    up to that step: TensorBoard events from `resume_step` on are superseded.
    """

    def __init__(
        self,
        run_dir: str | Path | None,
        end_step: int,
        progress: bool | str = False,
        config: Mapping[str, Any] | None = None,
        metric_tags: tuple[str, ...] = (),
        start_step: int = 0,
        resume_step: int | None = None,
    ) -> None:
        self.recorder = Recorder(run_dir, purge_step=resume_step) if run_dir is not None else None
        self.recording = self.recorder is not None
        if self.recorder is not None and config is not None and resume_step is None:
            atomic_write_bytes(  # `--resume` reads it back: never half written
                Path(run_dir, "config.yaml"),
                yaml.safe_dump(dict(config), sort_keys=False).encode("utf-8"),
            )
            self.recorder.config(config, list(metric_tags))
        # progress: True for the terminal's bar, "jsonl" for the lines a parent process reads.
        self.bar: Progress | None = None
        if progress == "jsonl":
            self.bar = Progress(JsonLinesView(), start_step)
        elif progress:
            self.bar = Progress(TqdmView(end_step, start_step=start_step), start_step)
        self.last_step, self.last_time = start_step, time.perf_counter()

    def record_episodes(self, infos: Mapping[str, Any], step: int) -> int:
        """Log the episodes that ended in this vector step (RecordEpisodeStatistics info), and
        the real score of Atari games that ended; returns how many episodes there were."""
        # Atari games that ended (envs.atari.GameScore), in the last step's info, which a
        # same-step autoreset files under final_info.
        final = infos.get("final_info", {})
        if "game_score" in final:
            for i in np.flatnonzero(final["_game_score"]):
                score = float(final["game_score"][i])
                if self.recorder is not None:
                    self.recorder.scalar("rollout/game_score", score, step)
                if self.bar is not None:
                    self.bar.game(score)
        if "episode" not in infos:
            return 0
        finished = np.flatnonzero(infos["_episode"])
        for i in finished:
            episodic_return = float(infos["episode"]["r"][i])
            if self.recorder is not None:
                self.recorder.scalar("rollout/episodic_return", episodic_return, step)
                self.recorder.scalar("rollout/episodic_length", int(infos["episode"]["l"][i]), step)
            if self.bar is not None:
                self.bar.episode(episodic_return)
        return len(finished)

    def record_scalars(self, values: Mapping[str, float], step: int) -> None:
        """Interval scalars, plus the environment steps per second since the last call."""
        if self.recorder is None:
            return
        now = time.perf_counter()
        self.recorder.scalars(values, step)
        if step > self.last_step:
            self.recorder.scalar(
                "time/steps_per_second", (step - self.last_step) / (now - self.last_time), step
            )
        self.last_step, self.last_time = step, now

    def record_evaluation(self, values: Mapping[str, float], step: int, seconds: float) -> None:
        """A periodic evaluation's scalars and how long it took; that time is left out of
        steps/s, which measures training."""
        self.last_time += seconds
        if self.bar is not None:
            self.bar.exclude(seconds)
            self.bar.evaluation(step, values["eval/mean_return"])
        if self.recorder is None:
            return
        self.recorder.scalars(values, step)
        self.recorder.scalar("time/eval_seconds", seconds, step)

    def progress(self, step: int) -> None:
        if self.bar is not None:
            self.bar.update(step)

    def close(self, step: int) -> None:
        if self.bar is not None:
            self.bar.close(step)
        if self.recorder is not None:
            self.recorder.close()
