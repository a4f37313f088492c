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

import torch
from torch import nn

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


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
