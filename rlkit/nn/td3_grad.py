"""TD3's gradient step with the backward written out by hand (agents.TD3 with fast_mlp, the
default): the same losses and gradients as its autograd update, without recording a graph.

Why: on small networks (the 64x64 of TD3's CI test) autograd's bookkeeping is most of an
update; at the Zoo's 400x300 the products weigh more and the gain is smaller
(benchmarks/td3_update.py times both).

The math, with a = tanh(z) the actor's action (z its last layer) and y the clipped double-Q
target of the smoothed target action (rlkit.math.targets.smoothed_actions, td_target):
- critic loss sum_i mean_B (Q_i(s, a_replay) - y)^2 (TD3 sums the two critics' MSEs), so
  d loss / d Q_i = 2 (Q_i - y) / B;
- actor loss -mean_B Q1(s, tanh(z)), every `policy_delay`-th update, with the critic's weights
  held fixed: d loss / d Q1 = -1/B, then through Q1 to the action (TwinCriticPasses.action_grad)
  and d a / d z = 1 - a^2.
tests/test_td3_grad.py checks every gradient and scalar against autograd.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlkit.data.buffers import ReplayBatch
from rlkit.math.targets import smoothed_actions, td_target
from rlkit.nn.critic_grad import TwinCriticPasses
from rlkit.nn.mlp_grad import PlainMLP
from rlkit.nn.networks import DeterministicPolicy, TwinQNetwork


class TD3Gradients:
    """TD3's losses and their gradients for one replay batch, without autograd. `step` writes
    `param.grad` of the critics, and of the actor on actor steps (None otherwise, as after the
    autograd update's zero_grad, so that the optimizer skips the actor's group whole)."""

    @staticmethod
    def supports(actor: DeterministicPolicy, critic: TwinQNetwork) -> bool:
        """Relu or tanh between the layers."""
        return (
            actor.encoder is None
            and PlainMLP.supports(actor.net)
            and TwinCriticPasses.supports(critic)
        )

    def __init__(
        self,
        actor: DeterministicPolicy,
        actor_target: DeterministicPolicy,
        critic: TwinQNetwork,
        critic_target: TwinQNetwork,
    ) -> None:
        # One flat buffer: the critics' gradients, then the actor's (PlainMLP's views of it).
        self.critic_params = list(critic.parameters())  # weights..., then biases...
        n_critic = sum(p.numel() for p in self.critic_params)
        first = self.critic_params[0]
        self.flat_grad = torch.zeros(
            n_critic + PlainMLP.numel(actor.net), device=first.device, dtype=first.dtype
        )
        self.critic_flat_grad = self.flat_grad[:n_critic]
        self.critic_grads: list[Tensor] = []
        offset = 0
        for p in self.critic_params:
            self.critic_grads.append(self.flat_grad[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
        layers = len(critic.weights)
        self.critics = TwinCriticPasses(
            critic, critic_target, self.critic_grads[:layers], self.critic_grads[layers:]
        )
        self.actor = PlainMLP(actor.net, flat_grad=self.flat_grad[n_critic:])
        self.actor_target = PlainMLP(actor_target.net, gradients=False)

    def step(
        self,
        batch: ReplayBatch,
        smoothing_noise: Tensor,
        noise_std: float,
        noise_clip: float,
        actor_step: bool,
    ) -> Tensor:
        """Set `param.grad` to the gradient of critic_loss (+ actor_loss on an actor step) for
        this batch, with the standard-normal draw (B, k) that smooths the target action.
        Returns (loss, critic_loss, grad norm, mean min Q[, actor_loss]), detached, as TD3's
        autograd update computes them."""
        obs, next_obs = batch.obs, batch.next_obs
        b, d = obs.shape
        with torch.no_grad():
            # Target policy smoothing, then the smaller target critic.
            target_actions = torch.tanh(self.actor_target.forward(next_obs))
            next_actions = smoothed_actions(target_actions, smoothing_noise, noise_std, noise_clip)
            q_next = self.critics.forward(torch.cat((next_obs, next_actions), 1), target=True)[0]
            next_q = q_next.squeeze(2).amin(0)
            target = td_target(batch.rewards, next_q, batch.terminated, batch.discounts)

            q, inputs = self.critics.forward(torch.cat((obs, batch.actions), 1))
            q = q.squeeze(2)  # (2, B)
            td_error = q - target
            self.critics.backward(td_error.mul(2.0 / b).unsqueeze(2), inputs)
            critic_loss = td_error.square().mean(1).sum()
            for p, g in zip(self.critic_params, self.critic_grads, strict=True):
                if p.grad is not g:  # (zero_grad(set_to_none=True) may have dropped them)
                    p.grad = g
            mean_q = torch.minimum(q[0], q[1]).mean()
            if not actor_step:
                for p in self.actor.parameters:
                    p.grad = None
                grad_norm = torch.linalg.vector_norm(self.critic_flat_grad)
                return torch.stack((critic_loss, critic_loss, grad_norm, mean_q))

            # The actor climbs Q1(s, mu(s)) through the action; the critics are held fixed.
            z, actor_inputs = self.actor.forward_saving(obs)
            mu = torch.tanh(z)
            q1, q1_inputs = self.critics.forward(torch.cat((obs, mu), 1), first_only=True)
            actor_loss = -q1.mean()
            grad_q1 = torch.full_like(q1, -1.0 / b)
            grad_mu = self.critics.action_grad(grad_q1, q1_inputs, d, first_only=True)
            self.actor.backward(torch.ops.aten.tanh_backward(grad_mu, mu), actor_inputs)
            grad_norm = torch.linalg.vector_norm(self.flat_grad)
            return torch.stack(
                (critic_loss + actor_loss, critic_loss, grad_norm, mean_q, actor_loss)
            )
