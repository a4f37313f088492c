"""On-policy rollout storage: one rollout of n_steps x n_envs steps, preallocated on the training
device, which the policy-gradient agents fill (rlkit.agent.on_policy) and learn from."""

from __future__ import annotations

import torch


class RolloutBuffer:
    """One rollout of `n_steps` x `n_envs` steps, preallocated on the training device."""

    def __init__(
        self,
        n_steps: int,
        n_envs: int,
        obs_dim: int | tuple[int, ...],
        device: torch.device,
        action_dim: int | None = None,
        obs_dtype: torch.dtype = torch.float32,
    ) -> None:
        """`action_dim`: None for discrete actions (one index per step), else the length of
        the float action vectors. `obs_dim`: a vector's length, or a frame's shape (kept as
        `obs_dtype`, uint8 pixels for a CNN)."""
        shape = (n_steps, n_envs)
        self.n_steps, self.n_envs = n_steps, n_envs
        obs_shape = (obs_dim,) if isinstance(obs_dim, int) else tuple(obs_dim)
        self.obs = torch.zeros((*shape, *obs_shape), dtype=obs_dtype, device=device)
        if action_dim is None:
            self.actions = torch.zeros(shape, dtype=torch.int64, device=device)
        else:
            self.actions = torch.zeros((*shape, action_dim), device=device)
        self.log_probs = torch.zeros(shape, device=device)
        self.rewards = torch.zeros(shape, device=device)
        self.dones = torch.zeros(shape, dtype=torch.bool, device=device)
        self.values = torch.zeros(shape, device=device)
        self.advantages = torch.zeros(shape, device=device)
        self.returns = torch.zeros(shape, device=device)

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in vars(self).values() if isinstance(t, torch.Tensor))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in vars(self).items() if isinstance(v, torch.Tensor)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name, tensor in self.state_dict().items():
            tensor.copy_(state[name])

    def flat(self, name: str) -> torch.Tensor:
        """A field with the step and copy dimensions merged: (n_steps * n_envs, ...)."""
        tensor = getattr(self, name)
        return tensor.reshape(-1, *tensor.shape[2:])
