"""Twin Q(s, a) critics (rlkit.nn.networks.TwinQNetwork: both critics as one stack of weights)
without autograd: the forward that keeps what the backward needs, the weights' gradients for a
gradient on the outputs, and the gradient with respect to the action input with the weights held
fixed. SAC's and TD3's written-out gradient steps (rlkit.nn.sac_grad, rlkit.nn.td3_grad) are built
on it; tests/test_sac_grad.py and tests/test_td3_grad.py check both steps against autograd.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rlkit.nn.mlp_grad import activation_backward
from rlkit.nn.networks import TwinQNetwork, output_layer

ACTIVATIONS = {nn.ReLU: "relu", nn.Tanh: "tanh"}


def _times_transposed(grad: Tensor, weight: Tensor) -> Tensor:
    """grad @ weight^T for each critic: (c, B, out) x (c, in, out) -> (c, B, in). From a single
    output it is an outer product, done as a broadcast multiply (a third of a product call)."""
    if grad.shape[-1] == 1:
        return grad * weight.transpose(1, 2)
    return torch.bmm(grad, weight.transpose(1, 2))


class TwinCriticPasses:
    """The online critics' and the target critics' passes, with the online weights' gradients
    written into `weight_grads` / `bias_grads` (views the caller lays out, shaped like the
    weights). `first_only`: the first critic alone (TD3's actor climbs Q1 only)."""

    @staticmethod
    def supports(critic: TwinQNetwork) -> bool:
        """Relu or tanh between the layers (what `activation_backward` knows), and no
        encoder (a CNN goes through autograd)."""
        return critic.encoder is None and type(critic.activation) in ACTIVATIONS

    def __init__(
        self,
        critic: TwinQNetwork,
        critic_target: TwinQNetwork,
        weight_grads: list[Tensor],
        bias_grads: list[Tensor],
    ) -> None:
        self.activation = ACTIVATIONS[type(critic.activation)]
        # The Parameter objects themselves: they stay the same objects when an optimizer
        # re-points their storage at its flat buffer.
        self.weights = list(critic.weights)
        self.biases = list(critic.biases)
        self.target_weights = list(critic_target.weights)
        self.target_biases = list(critic_target.biases)
        self.weight_grads = weight_grads
        self.bias_grads = bias_grads

    def forward(
        self, x: Tensor, target: bool = False, first_only: bool = False
    ) -> tuple[Tensor, list[Tensor]]:
        """The critics over the rows of x = (obs, actions) (TwinQNetwork's arithmetic): their
        outputs (c, rows, 1), c = 2 (1 if first_only), and each layer's input."""
        weights = self.target_weights if target else self.weights
        biases = self.target_biases if target else self.biases
        if first_only:
            weights, biases = [w[:1] for w in weights], [b[:1] for b in biases]
        x = x.expand(len(weights[0]), -1, -1)
        inputs = [x]
        last = len(weights) - 1
        for w, bias in zip(weights[:last], biases[:last], strict=True):
            x = torch.baddbmm(bias, x, w)
            x = x.relu_() if self.activation == "relu" else x.tanh_()
            inputs.append(x)
        return output_layer(x, weights[last], biases[last]), inputs

    def backward(self, grad: Tensor, inputs: list[Tensor]) -> None:
        """Write both online critics' weight gradients for d loss / d Q = `grad` (2, B, 1)."""
        weights = self.weights
        last = len(weights) - 1
        for i in range(last, -1, -1):
            if i == last:  # (c, in, 1), computed as its transpose, one row (`output_layer`)
                out = self.weight_grads[i].transpose(1, 2)
                torch.bmm(grad.transpose(1, 2), inputs[i], out=out)
            else:
                torch.bmm(inputs[i].transpose(1, 2), grad, out=self.weight_grads[i])
            torch.sum(grad, 1, keepdim=True, out=self.bias_grads[i])
            if i > 0:
                grad = _times_transposed(grad, weights[i])
                grad = activation_backward(grad, inputs[i], self.activation)

    def action_grad(
        self, grad: Tensor, inputs: list[Tensor], obs_dim: int, first_only: bool = False
    ) -> Tensor:
        """d loss / d action (B, k) for d loss / d Q = `grad` (c, B, 1) from a `forward` of the
        online critics, their weights held fixed (they get nothing from this term)."""
        weights = [w[:1] for w in self.weights] if first_only else self.weights
        for i in range(len(weights) - 1, 0, -1):
            grad = _times_transposed(grad, weights[i])
            grad = activation_backward(grad, inputs[i], self.activation)
        action_rows = weights[0][:, obs_dim:, :].transpose(1, 2)  # (c, out, k)
        return torch.bmm(grad, action_rows).sum(0)
