"""Recurrent cores over whole sequences, with the state reset where an episode starts.

A rollout of T steps from B env copies holds episodes that end and begin inside it. A
recurrent policy must start each episode from the zero state, so the state carried into a
step where an episode starts is zeroed for that copy. Stepping torch's nn.LSTM or nn.GRU once
per step in a Python loop does that simply, and slowly (sb3-contrib #113: about 10x slower
than plain PPO). `run_sequences` runs the core over the longest stretches in which no copy
starts an episode, one call of the core per stretch, and zeroes the state only between them:
a rollout in which no episode starts is one call.

States are torch's: (h, c) for an LSTM, h for a GRU, each (layers, B, hidden).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from rlkit.nn.networks import PolicyHeads, mlp

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]
# The policy core's state and the value core's (None where they share one).
RecurrentState = tuple[State, State | None]
CORES = {"lstm": nn.LSTM, "gru": nn.GRU}


def zero_state(core: nn.LSTM | nn.GRU, batch: int, device: torch.device | None = None) -> State:
    """The state an episode starts from: zeros, (h, c) for an LSTM."""
    h = torch.zeros(core.num_layers, batch, core.hidden_size, device=device)
    return (h, torch.zeros_like(h)) if isinstance(core, nn.LSTM) else h


def reset_where(state: State, starts: torch.Tensor) -> State:
    """`state` with the copies where `starts` (B,) is true set to zero."""
    keep = (~starts).to(_first(state).dtype).view(1, -1, 1)
    if isinstance(state, tuple):
        return tuple(part * keep for part in state)  # type: ignore[return-value]
    return state * keep


def run_sequences(
    core: nn.LSTM | nn.GRU, inputs: torch.Tensor, starts: torch.Tensor, state: State
) -> tuple[torch.Tensor, State]:
    """The core over `inputs` (T, B, features), time first, from `state`, with each copy's
    state zeroed before every step where `starts` (T, B) is true (an episode's first step).
    Returns the outputs (T, B, hidden) and the state after the last step. One call of the core
    per stretch between the steps where some copy starts, the same numbers as stepping it once
    per step (tests/test_recurrent.py)."""
    steps = inputs.shape[0]
    if steps == 0:
        return inputs.new_zeros(0, inputs.shape[1], core.hidden_size), state
    # The steps where some copy starts an episode cut the sequence; step 0 always begins one.
    cuts = [0, *torch.nonzero(starts[1:].any(dim=1)).flatten().add(1).tolist(), steps]
    outputs = []
    for begin, end in itertools.pairwise(cuts):
        state = reset_where(state, starts[begin])
        out, state = core(inputs[begin:end], state)
        outputs.append(out)
    return torch.cat(outputs) if len(outputs) > 1 else outputs[0], state


def step_by_step(
    core: nn.LSTM | nn.GRU, inputs: torch.Tensor, starts: torch.Tensor, state: State
) -> tuple[torch.Tensor, State]:
    """`run_sequences` written as the plain loop, one step at a time: the reference it is
    checked against."""
    outputs = []
    for t in range(inputs.shape[0]):
        state = reset_where(state, starts[t])
        out, state = core(inputs[t : t + 1], state)
        outputs.append(out)
    return torch.cat(outputs), state


def _first(state: State) -> torch.Tensor:
    return state[0] if isinstance(state, tuple) else state


class RecurrentActorCritic(PolicyHeads, nn.Module):
    """A policy and a value function with memory: (an encoder), a recurrent core, then MLP
    heads. The policy and the value each have their own core by default (sb3-contrib's
    RecurrentPPO with enable_critic_lstm); `shared_core` gives them one. Inputs are sequences,
    time first: (T, B, ...) observations with (T, B) episode-start flags, and the state the
    cores carry in; `forward` returns the policy head (T, B, n_actions), the values (T, B) and
    the state after the last step. Acting is the same call with T = 1."""

    def __init__(
        self,
        obs_dim: int,
        n_actions: int,
        core: str = "lstm",
        core_size: int = 64,
        core_layers: int = 1,
        hidden_sizes: Sequence[int] = (64,),
        activation: str = "tanh",
        init: str = "orthogonal",
        gain: float | None = None,
        continuous: bool = False,
        log_std_init: float = 0.0,
        encoder: nn.Module | None = None,
        shared_core: bool = False,
    ) -> None:
        super().__init__()
        if core not in CORES:
            raise ValueError(f"unknown recurrent core {core!r}; choose one of {', '.join(CORES)}")
        self.continuous = continuous
        self.encoder = encoder
        in_features = encoder.features if encoder is not None else obs_dim
        self.policy_core = CORES[core](in_features, core_size, core_layers)
        self.value_core = None if shared_core else CORES[core](in_features, core_size, core_layers)
        self.policy = mlp(core_size, hidden_sizes, n_actions, activation, init, 0.01, gain)
        self.value = mlp(core_size, hidden_sizes, 1, activation, init, 1.0, gain)
        if continuous:  # n_actions: action dimensions
            self.log_std = nn.Parameter(torch.full((n_actions,), float(log_std_init)))

    def initial_state(self, batch: int, device: torch.device | None = None) -> RecurrentState:
        """The zero state of every core for `batch` env copies: what an episode starts from."""
        value = None if self.value_core is None else zero_state(self.value_core, batch, device)
        return zero_state(self.policy_core, batch, device), value

    def forward(
        self, obs: torch.Tensor, starts: torch.Tensor, state: RecurrentState
    ) -> tuple[torch.Tensor, torch.Tensor, RecurrentState]:
        steps, batch = starts.shape
        features = obs.reshape(steps * batch, *obs.shape[2:])
        if self.encoder is not None:
            features = self.encoder(features)
        features = features.reshape(steps, batch, -1).float()
        policy_out, policy_state = run_sequences(self.policy_core, features, starts, state[0])
        if self.value_core is None:
            value_out, value_state = policy_out, None
        else:
            value_out, value_state = run_sequences(self.value_core, features, starts, state[1])
        values = self.value(value_out).squeeze(-1)
        return self.policy(policy_out), values, (policy_state, value_state)
