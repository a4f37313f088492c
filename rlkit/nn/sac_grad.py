"""SAC's gradient step with the backward written out by hand (agents.SAC with fast_mlp, the
default): the same losses and gradients as its autograd `_update`, in about three quarters of
the time on CPU at the RL Zoo's sizes (benchmarks/replay_update.py: 2.4 against 3.1 ms per update
under "medium" matmul precision, 3.6 against 4.0 under "highest").

Why: of autograd's ~3.1 ms per update (batch 256, 256x256 actor and twin critics), the matrix
products are ~2 ms; the rest is per-operation cost (~150 operators, and the graph recorded and
replayed around them). Written out, the same products run with fewer calls around them:
- the actor runs once over next_obs and obs stacked (2B rows): the target's sample and the
  actor term's sample in one pass (its backward uses rows B: only);
- the mean and log-std heads run as one product;
- the actor term's pass through the critics needs the gradient with respect to the action only:
  no weight gradients, and the first layer's product only over the action's rows;
- the gradients land in one flat buffer that `param.grad` views, so the norm is one norm.
(Stacking the two online critic passes into one of 2B rows as well was slower: the weight
gradients then take strided halves, which the batched products copy first.)

The math, for a = tanh(u), u = mean + std * noise, and log p(a) = log N(u) - sum log(1 - a^2)
(rlkit.math.gaussian.squashed_sample): written through the noise, the Gaussian term is
-noise^2 / 2 - log std - log(2 pi) / 2, so with the loss's gradients g_a on a and g_l on log p,
g_u = g_a (1 - a^2) + 2 a g_l (d/du of -log(1 - tanh(u)^2) is 2 tanh(u)), g_mean = g_u and
g_log_std = g_u std noise - g_l (rlkit.math.gaussian.squashed_sample_grads). tests/test_sac_grad.py
checks every gradient and scalar of the step against autograd.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlkit.data.buffers import ReplayBatch
from rlkit.math.gaussian import LOG_STD_MAX, LOG_STD_MIN, squashed_sample, squashed_sample_grads
from rlkit.math.targets import td_target
from rlkit.nn.critic_grad import ACTIVATIONS, TwinCriticPasses
from rlkit.nn.mlp_grad import activation_backward
from rlkit.nn.networks import SquashedGaussianPolicy, TwinQNetwork

# A weight gradient with at most this many columns (a layer over the observation of Pendulum's
# 3 or Hopper's 11 numbers) is computed as its transpose and copied: torch's CPU product runs
# about twice as fast when the result is wide (benchmarks/narrow_products.py).
NARROW = 16


class SACGradients:
    """SAC's losses and their gradients for one replay batch, without autograd. `step` writes
    `param.grad` for the actor, the critics and log alpha (zero unless alpha is tuned), and
    returns the update's scalars as one tensor (see `step`)."""

    @staticmethod
    def supports(actor: SquashedGaussianPolicy, critic: TwinQNetwork) -> bool:
        """Relu or tanh between the layers (what `activation_backward` knows)."""
        trunk = list(actor.trunk)
        return (
            actor.encoder is None
            and len(trunk) > 0
            and all(type(m) in ACTIVATIONS for m in trunk[1::2])
            and TwinCriticPasses.supports(critic)
        )

    def __init__(
        self,
        actor: SquashedGaussianPolicy,
        critic: TwinQNetwork,
        critic_target: TwinQNetwork,
        log_alpha: Tensor,
        tune_alpha: bool = True,
    ) -> None:
        trunk = list(actor.trunk)
        self.actor_activation = ACTIVATIONS[type(trunk[1])]
        # The Parameter objects themselves: they stay the same objects when the optimizer
        # re-points their storage at its flat buffer.
        self.trunk_weights = [m.weight for m in trunk[0::2]]
        self.trunk_biases = [m.bias for m in trunk[0::2]]
        self.head_weights = (actor.mean.weight, actor.log_std.weight)
        self.head_biases = (actor.mean.bias, actor.log_std.bias)
        critic_weights, critic_biases = list(critic.weights), list(critic.biases)
        self.log_alpha = log_alpha
        self.tune_alpha = tune_alpha
        # One flat gradient buffer, in the order of SAC's optimizer (the actor's parameters,
        # the critics', log alpha), which then reads the gradients there instead of copying
        # them into its own (rlkit.optim's `in_place_flat_grad`). A fixed alpha's log alpha
        # keeps a slot that stays zero: its Adam step leaves it where it is, and the buffer
        # stays whole.
        first = self.trunk_weights[0]
        params = [p for wb in zip(self.trunk_weights, self.trunk_biases, strict=True) for p in wb]
        params += [self.head_weights[0], self.head_biases[0]]
        params += [self.head_weights[1], self.head_biases[1]]
        params += [*critic_weights, *critic_biases]
        params += [log_alpha]
        self.params = params
        n = sum(p.numel() for p in params)
        self.flat_grad = torch.zeros(n, device=first.device, dtype=first.dtype)
        self.grads: list[Tensor] = []
        offset = 0
        for p in params:
            self.grads.append(self.flat_grad[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
        n_trunk = 2 * len(self.trunk_weights)
        # The fused head product's gradient is computed whole, then copied to the two heads.
        self.head_grads = (self.grads[n_trunk], self.grads[n_trunk + 2])
        self.head_bias_grads = (self.grads[n_trunk + 1], self.grads[n_trunk + 3])
        n_critic = len(critic_weights)
        self.critics = TwinCriticPasses(
            critic,
            critic_target,
            self.grads[n_trunk + 4 : n_trunk + 4 + n_critic],
            self.grads[n_trunk + 4 + n_critic : n_trunk + 4 + 2 * n_critic],
        )

    def step(
        self,
        batch: ReplayBatch,
        next_noise: Tensor,
        pi_noise: Tensor,
        alpha: Tensor,
        target_entropy: float,
    ) -> Tensor:
        """Set `param.grad` to the gradient of critic_loss + actor_loss (+ alpha_loss) for this
        batch, with standard-normal draws (B, k) for the next actions and the actor term's.
        Returns (loss, critic_loss, actor_loss, grad norm, mean min Q, entropy, action std,
        alpha_loss), detached, as SAC's autograd `_update` computes them."""
        obs, actions, next_obs = batch.obs, batch.actions, batch.next_obs
        b, d = obs.shape
        with torch.no_grad():
            # The actor over next_obs (rows :B) and obs (rows B:), keeping what backward needs.
            x = torch.cat((next_obs, obs))
            trunk_inputs = [x]
            for weight, bias in zip(self.trunk_weights, self.trunk_biases, strict=True):
                x = torch.addmm(bias, x, weight.t())
                x = x.relu_() if self.actor_activation == "relu" else x.tanh_()
                trunk_inputs.append(x)
            head_weight = torch.cat(self.head_weights)
            heads = torch.addmm(torch.cat(self.head_biases), x, head_weight.t())
            k = heads.shape[1] // 2
            mean, raw_log_std = heads[:, :k], heads[:, k:]
            log_std = raw_log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
            noise = torch.cat((next_noise, pi_noise))
            sampled, log_prob = squashed_sample(mean, log_std, noise)
            next_actions, pi_actions = sampled[:b], sampled[b:]
            next_log_prob, pi_log_prob = log_prob[:b], log_prob[b:]

            # The soft target: the smaller target critic minus alpha log pi.
            q_next = self.critics.forward(torch.cat((next_obs, next_actions), 1), target=True)[0]
            next_q = q_next.squeeze(2).amin(0)
            target = td_target(
                batch.rewards, next_q - alpha * next_log_prob, batch.terminated, batch.discounts
            )

            # The online critics over (obs, replay actions), and over (obs, the actor's actions)
            # for the actor term.
            q, critic_inputs = self.critics.forward(torch.cat((obs, actions), 1))
            q_pi, frozen_inputs = self.critics.forward(torch.cat((obs, pi_actions), 1))
            q, q_pi = q.squeeze(2), q_pi.squeeze(2)  # (2, B) each
            q_pi_min = torch.minimum(q_pi[0], q_pi[1])
            td_error = q - target
            self.critics.backward(td_error.div(b).unsqueeze(2), critic_inputs)
            # d actor_loss / d Q(s, a~pi): -1/B to the smaller critic (torch.minimum's rule:
            # half to each on a tie).
            first, second = q_pi[0], q_pi[1]
            to_first = (
                (first < second).to(q_pi.dtype).add_((first == second).to(q_pi.dtype), alpha=0.5)
            )
            grad_q_pi = torch.stack((to_first, 1.0 - to_first)).mul_(-1.0 / b).unsqueeze(2)
            grad_pi_actions = self.critics.action_grad(grad_q_pi, frozen_inputs, d)

            # The actor term: alpha log pi - min Q(s, a~pi), through a and log pi.
            grad_log_prob = (alpha / b).expand(b)
            pi_log_std = log_std[b:]
            grad_mean, grad_log_std = squashed_sample_grads(
                grad_pi_actions, grad_log_prob, pi_actions, pi_log_std, pi_noise
            )
            raw = raw_log_std[b:]
            inside = (raw >= LOG_STD_MIN) & (raw <= LOG_STD_MAX)  # the clamp's gradient
            grad_heads = torch.cat((grad_mean, grad_log_std * inside), 1)
            self._actor_backward(grad_heads, head_weight, trunk_inputs, b)

            actor_loss = (alpha * pi_log_prob - q_pi_min).mean()
            critic_loss = 0.5 * td_error.square().mean(1).sum()
            if self.tune_alpha:  # alpha rises when the entropy is below the target
                mean_log_prob = pi_log_prob.mean()
                self.grads[-1].copy_(-(mean_log_prob + target_entropy))
                alpha_loss = -(self.log_alpha * (pi_log_prob + target_entropy)).mean()
            else:
                alpha_loss = torch.zeros((), device=obs.device)
            for p, g in zip(self.params, self.grads, strict=True):
                if p.grad is not g:  # (zero_grad(set_to_none=True) may have dropped them)
                    p.grad = g
            return torch.stack((
                critic_loss + actor_loss + alpha_loss, critic_loss, actor_loss,
                torch.linalg.vector_norm(self.flat_grad), torch.minimum(q[0], q[1]).mean(),
                -pi_log_prob.mean(), pi_log_std.exp().mean(), alpha_loss,
            ))  # fmt: skip

    def _actor_backward(
        self, grad_heads: Tensor, head_weight: Tensor, inputs: list[Tensor], b: int
    ) -> None:
        """Write the actor's gradients from d loss / d (mean, raw log std) of rows B: (B, 2k)."""
        k = len(self.head_grads[0])
        head_weight_grad = torch.mm(grad_heads.t(), inputs[-1][b:])
        head_bias_grad = torch.sum(grad_heads, 0)
        for i in range(2):
            self.head_grads[i].copy_(head_weight_grad[i * k : (i + 1) * k])
            self.head_bias_grads[i].copy_(head_bias_grad[i * k : (i + 1) * k])
        grad = activation_backward(
            grad_heads.mm(head_weight), inputs[-1][b:], self.actor_activation
        )
        for i in range(len(self.trunk_weights) - 1, -1, -1):
            if inputs[i].shape[1] <= NARROW:  # (out, in) as its transpose, then copied
                self.grads[2 * i].copy_(torch.mm(inputs[i][b:].t(), grad).t())
            else:
                torch.mm(grad.t(), inputs[i][b:], out=self.grads[2 * i])
            torch.sum(grad, 0, out=self.grads[2 * i + 1])
            if i > 0:
                grad = activation_backward(
                    grad.mm(self.trunk_weights[i]), inputs[i][b:], self.actor_activation
                )
