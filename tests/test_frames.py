"""Frame stacks stored once in replay (rlkit.data.frames): every rebuilt stack is the observation
that was seen, across episode starts, terminations, time limits, n-step windows, several env
copies and rings that wrap; checkpoints round-trip; the memory is what the issue promises."""

import numpy as np
import pytest
import torch

import agents
import envs
from rlkit.base.errors import BufferTooLargeError
from rlkit.data.buffers import PrioritizedReplayBuffer, ReplayBuffer
from rlkit.data.frames import FrameStore, frames_per_copy
from rlkit.data.nstep import NStepCollector

STACK_ENV = "rlkit/CatchPixelStack-v0"


def _fill(steps, n_envs, capacity, ring, max_episode_steps=None, channels_last=False, seed=0):
    """Random play fed to a frame-storing buffer and, in parallel, to a plain one (both through
    an n-step collector): the two must hold the same transitions."""
    kwargs = {"max_episode_steps": max_episode_steps} if max_episode_steps else {}
    env = envs.make(STACK_ENV, n_envs=n_envs, seed=seed, keep_images=True, env_kwargs=kwargs)
    shape = env.single_observation_space.shape
    if channels_last:  # (H, W, k), as Stable-Baselines3's VecFrameStack stacks
        shape = (*shape[1:], shape[0])
    store = FrameStore(shape, -1 if channels_last else 0, n_envs, ring)
    stored = ReplayBuffer(capacity, shape, frames=store)
    plain = ReplayBuffer(capacity, shape, obs_dtype=torch.uint8)
    collect_refs, collect_plain = NStepCollector(3, 0.9, n_envs), NStepCollector(3, 0.9, n_envs)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    ends = {"terminated": 0, "truncated": 0}
    for _ in range(steps):
        next_obs, rewards, terminated, truncated, infos = env.step(rng.integers(3, size=n_envs))
        real = envs.real_next_obs(next_obs, infos)
        ends["terminated"] += int(terminated.sum())
        ends["truncated"] += int(truncated.sum())
        if channels_last:
            obs_in, real_in = np.moveaxis(obs, 1, -1), np.moveaxis(real, 1, -1)
        else:
            obs_in, real_in = obs, real
        refs = (store.add(obs_in), store.add(real_in))
        step = (rng.integers(3, size=n_envs), rewards, terminated, truncated)
        if (ready := collect_refs.add(refs[0], step[0], step[1], refs[1], *step[2:])) is not None:
            stored.add(*ready)
        if (ready := collect_plain.add(obs_in, step[0], step[1], real_in, *step[2:])) is not None:
            plain.add(*ready)
        obs = next_obs
    return stored, plain, ends


def _compare_all_rows(stored, plain):
    rows = torch.arange(len(stored))
    held = stored.frames.holds(stored.obs[rows])
    fields = ("obs", "next_obs", "rewards", "terminated", "truncated", "discounts")
    a = dict(zip(stored.FIELDS, stored._gather(rows[held], fields), strict=True))
    b = dict(zip(plain.FIELDS, plain._gather(rows[held], fields), strict=True))
    for name in fields:
        assert torch.equal(a[name], b[name]), name
    return held


@pytest.mark.parametrize("max_episode_steps", [None, 6], ids=["terminations", "time-limits"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["k-first", "k-last"])
def test_every_rebuilt_stack_is_the_observation_that_was_seen(max_episode_steps, channels_last):
    # 3 copies, a buffer that wraps twice, rings long enough for its transitions.
    stored, plain, ends = _fill(
        600, 3, 500, frames_per_copy(500, 3, 4) + 200, max_episode_steps, channels_last
    )
    kind = "truncated" if max_episode_steps else "terminated"
    assert ends[kind] > 100  # many episode ends of the kind under test crossed
    assert len(stored) == 500
    held = _compare_all_rows(stored, plain)
    assert bool(held.all())


def test_each_frame_is_written_once_and_episode_starts_write_the_whole_stack():
    store = FrameStore((4, 3, 2), 0, 1, 64)
    frames = [np.full((3, 2), v, np.uint8) for v in range(10)]
    first = np.stack(frames[0:4])[None]
    assert store.add(first).tolist() == [3] and store.written.tolist() == [4]
    assert store.add(first).tolist() == [3] and store.written.tolist() == [4]  # the same obs
    assert store.add(np.stack(frames[1:5])[None]).tolist() == [4]  # shifted: one new frame
    assert store.written.tolist() == [5]
    # A new episode (not a shift of the last stack) writes its four frames.
    assert store.add(np.stack([frames[9]] * 4)[None]).tolist() == [8]
    assert store.written.tolist() == [9]
    got = store.stacks(torch.tensor([3, 4, 8]))
    assert torch.equal(got[1], torch.from_numpy(np.stack(frames[1:5])))
    assert torch.equal(got[2], torch.from_numpy(np.stack([frames[9]] * 4)))


def test_a_row_whose_frames_were_overwritten_is_drawn_again():
    # A ring far shorter than the buffer: the oldest rows' frames are gone.
    stored, plain, _ = _fill(400, 2, 400, 120)
    held = _compare_all_rows(stored, plain)
    assert 0 < int(held.sum()) < len(stored)
    rows = torch.arange(len(stored))
    generator = torch.Generator().manual_seed(0)
    redrawn = stored._redraw_stale(rows.clone(), generator)
    assert bool(stored.frames.holds(stored.obs[redrawn]).all())
    assert torch.equal(redrawn[held], rows[held])  # held rows are kept as drawn
    batch = stored.sample(256, generator)
    assert batch.obs.shape == (256, 4, 10, 5) and batch.obs.dtype == torch.uint8


def test_prioritized_replay_gives_stale_rows_priority_zero():
    stored, _, _ = _fill(200, 1, 200, 40)  # rings of 40 frames: most rows are stale
    buffer = PrioritizedReplayBuffer(200, (4, 10, 5), frames=stored.frames)
    buffer.add(*(getattr(stored, name)[: len(stored)].numpy() for name in buffer.FIELDS))
    stale = ~stored.frames.holds(buffer.obs[: len(buffer)])
    assert bool(stale.any()) and not bool(stale.all())
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        batch = buffer.sample(64, generator)
        assert bool(stored.frames.holds(buffer.obs[batch.indices]).all())
    # Stale rows a draw met are out of the tree; the held ones keep their priority.
    priorities = buffer.tree.priorities(torch.arange(len(buffer)))
    assert bool((priorities[~stale] > 0).all())
    assert bool((priorities[stale] == 0).any())


def test_checkpoint_round_trip_is_exact_and_keeps_only_written_frames():
    stored, _, _ = _fill(50, 2, 500, 1000)
    state = stored.state_dict()
    assert state["frames"]["frames"].shape[1] == int(stored.frames.written.max())  # not 1000
    fresh = ReplayBuffer(500, (4, 10, 5), frames=FrameStore((4, 10, 5), 0, 2, 1000))
    fresh.load_state_dict(state)
    rows = torch.arange(len(stored))
    assert torch.equal(fresh._gather(rows, None)[0], stored._gather(rows, None)[0])
    assert torch.equal(fresh.frames.frames, stored.frames.frames)
    # The next observation of each copy is compared with the restored last one: no rewrite.
    last = stored.frames.stacks(stored.next_obs[len(stored) - 2 : len(stored)]).numpy()
    written = fresh.frames.written.copy()
    copies = (stored.next_obs[len(stored) - 2 : len(stored)] % 2).numpy()
    fresh.frames.add(last, copies)
    assert fresh.frames.written.tolist() == written.tolist()


def test_an_atari_sized_million_transition_buffer_takes_about_seven_and_a_half_gb():
    shape, capacity = (4, 84, 84), 1_000_000
    frames = FrameStore.bytes_needed(shape, 0, 1, frames_per_copy(capacity, 1, 4), torch.uint8)
    rows = ReplayBuffer.bytes_needed(capacity, (), torch.int64)
    whole = ReplayBuffer.bytes_needed(capacity, shape, torch.uint8)
    assert 7.0e9 < frames + rows < 7.6e9  # (SB3: 56 GB, or 28 with optimize_memory_usage)
    assert whole > 56e9
    with pytest.raises(BufferTooLargeError, match=r"needs 4\d\.\d GB"):
        ReplayBuffer.check_fits(
            6_000_000, (), "cpu", torch.int64, frame_bytes=6 * frames, memory_fraction=1e-9
        )


def test_dqn_keeps_frame_stacks_once_and_says_so():
    agent = agents.DQN(STACK_ENV, buffer_size=2000, learning_starts=100, eval_interval=0)
    assert agent.replay_obs.stack_axis == 0
    assert "each frame stored once" in agent.describe_memory()
    agent.learn(400)
    assert agent.buffer.obs.dtype == torch.int64 and agent.buffer.frames is not None
    # About one frame per step (plus four per 9-step episode start), not 2 x 4.
    assert int(agent.buffer.frames.written.sum()) < 400 * 1.6
    whole = agents.DQN(STACK_ENV, buffer_size=2000, store_frames_once=False, eval_interval=0)
    assert whole.replay_obs.stack_axis is None and "once" not in whole.describe_memory()


@pytest.mark.parametrize("name", ["sac", "td3"])
def test_sac_and_td3_keep_frame_stacks_once_and_sample_what_was_seen(name):
    """The continuous-action replay keeps frame stacks as DQN's does: the batches it samples
    equal those of a replay that keeps every observation whole (same seed, same draws)."""
    settings = dict(
        env=STACK_ENV, env_kwargs={"continuous": True}, n_envs=2, buffer_size=300,
        learning_starts=50, batch_size=16, eval_interval=0, network={"hidden_sizes": [16]},
    )  # fmt: skip
    once = agents.agent_class(name)(**settings, seed=4)
    whole = agents.agent_class(name)(**settings, seed=4, store_frames_once=False)
    assert once.replay_obs.stack_axis == 0 and whole.replay_obs.stack_axis is None
    assert "each frame stored once" in once.describe_memory()
    for agent in (once, whole):
        agent.learn(400)  # (the 300-row buffer wraps)
    assert once.buffer.obs.dtype == torch.int64 and once.buffer.frames is not None
    assert whole.buffer.obs.dtype == torch.uint8
    fields = {"obs", "next_obs", "actions", "rewards", "terminated"}
    a = once.buffer.sample(64, torch.Generator().manual_seed(0), fields)
    b = whole.buffer.sample(64, torch.Generator().manual_seed(0), fields)
    for field in fields:
        assert torch.equal(getattr(a, field), getattr(b, field)), field
