"""The memory of a DQN process whose replay holds `--transitions` frame-stacked Atari-sized
observations (4 x 84 x 84 uint8), filled: its peak resident set (VmHWM) and what the buffer
says it allocates, against what the observations would take stored whole.

    .venv/bin/python benchmarks/replay_memory.py [--transitions 1000000] [--episode 1000]

The process builds DQN on rlkit/CatchPixelStack-v0 at 84 x 84 (gymnasium's
FrameStackObservation of 4 frames, the Nature CNN), allocates the replay, and writes
`--transitions` steps of new random frames into it through the frame store, a new episode (a
whole new stack) every `--episode` steps, as the env loop would; then it takes 10 gradient
steps on batches drawn from it. It needs about 8 GB free for a million transitions.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORKER = """
import json, sys, time
import numpy as np
import torch
import agents
transitions, episode = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(2)
agent = agents.DQN(env="rlkit/CatchPixelStack-v0", env_kwargs={"rows": 84, "columns": 84},
                   buffer_size=transitions, batch_size=32, eval_interval=0,
                   network={"encoder": "nature_cnn", "hidden_sizes": [512]})
described = agent.describe_memory()
agent._prepare_run(0, transitions)
buffer, frames = agent.buffer, agent.buffer.frames
rng = np.random.default_rng(0)
start = time.perf_counter()
stack = rng.integers(0, 256, (1, 4, 84, 84), dtype=np.uint8)
chunk = 1000
obs_refs, next_refs = np.empty(chunk, np.int64), np.empty(chunk, np.int64)
for step in range(transitions):
    if step % episode == 0:  # a new episode: four new frames
        stack = rng.integers(0, 256, (1, 4, 84, 84), dtype=np.uint8)
    obs_refs[step % chunk] = frames.add(stack)[0]
    stack = np.concatenate([stack[:, 1:], rng.integers(0, 256, (1, 1, 84, 84), np.uint8)], 1)
    next_refs[step % chunk] = frames.add(stack)[0]
    if step % chunk == chunk - 1:
        zeros = np.zeros(chunk)
        buffer.add(obs_refs, zeros.astype(np.int64), zeros, next_refs, zeros > 0, zeros > 0, 0.99)
fill_s = time.perf_counter() - start
start = time.perf_counter()
for _ in range(10):
    agent._update(0.0)
update_ms = (time.perf_counter() - start) / 10 * 1e3
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
print(json.dumps({
    "described": described, "transitions": len(buffer), "buffer_bytes": buffer.nbytes,
    "frames_written": int(frames.written.sum()), "fill_s": fill_s, "update_ms": update_ms,
    "vm_hwm_kb": int(status["VmHWM"].split()[0]), "vm_rss_kb": int(status["VmRSS"].split()[0]),
}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transitions", type=int, default=1_000_000)
    parser.add_argument("--episode", type=int, default=1_000)
    args = parser.parse_args()
    result = subprocess.run(
        [sys.executable, "-c", WORKER, str(args.transitions), str(args.episode)],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    if result.returncode != 0:
        sys.exit(result.stderr.strip().splitlines()[-1])
    out = json.loads(result.stdout.strip().splitlines()[-1])
    gb = 1e9
    whole = args.transitions * (2 * 4 * 84 * 84 + 8 + 4 * 3 + 3)
    print(f"{out['described']}")
    print(
        f"filled {out['transitions']:,} transitions ({out['frames_written']:,} frames) "
        f"in {out['fill_s']:.0f} s; a gradient step on them: {out['update_ms']:.1f} ms"
    )
    print(
        f"buffer: {out['buffer_bytes'] / gb:.2f} GB (10^9 bytes); observations stored whole: "
        f"{whole / gb:.1f} GB (Stable-Baselines3 with optimize_memory_usage: about half)"
    )
    print(f"process peak RSS (VmHWM): {out['vm_hwm_kb'] * 1024 / gb:.2f} GB, "
          f"RSS at the end: {out['vm_rss_kb'] * 1024 / gb:.2f} GB")  # fmt: skip


if __name__ == "__main__":
    main()
