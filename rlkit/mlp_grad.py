"""A plain MLP's forward and backward written out by hand, for the DQN update.

On a 64-row batch through a 4-256-256-2 Q-network, autograd's bookkeeping (recording ~30
nodes, allocating every gradient, replaying the graph) and the generic loss and clipping code
cost about as much as the matrix products themselves (profile: benchmarks/README.md). For a
plain MLP (Linear layers with relu or tanh between them) and a per-sample regression loss on
one output per row, the backward is two matrix products and one fused activation derivative per
layer; here it is, with the gradients written straight into one flat buffer that `param.grad`
views, so clipping is one norm and the optimizer gathers nothing. tests/test_mlp_grad.py checks
the gradients against autograd.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn


def _huber_grad(error: Tensor, delta: float = 1.0) -> Tensor:
    return error.clamp(-delta, delta)


def _pseudo_huber_grad(error: Tensor, delta: float = 1.0) -> Tensor:
    return error / torch.sqrt(1.0 + (error / delta).square())


# d loss(prediction, target) / d prediction per sample, as a function of prediction - target,
# for the losses of rlkit.losses (before their mean and importance weights).
LOSS_GRADIENTS: dict[str, Callable[[Tensor], Tensor]] = {
    "mse": lambda error: 2.0 * error,
    "l2": lambda error: 2.0 * error,
    "l1": torch.sign,
    "huber": _huber_grad,
    "smooth_l1": _huber_grad,
    "pseudo_huber": _pseudo_huber_grad,
}

_ACTIVATIONS: dict[type, str] = {nn.ReLU: "relu", nn.Tanh: "tanh"}


class MLPRegression:
    """Forward, TD-loss gradients and gradient clipping of an `nn.Sequential` of Linear layers
    with ReLU or Tanh between them (rlkit.networks.mlp), without autograd."""

    def __init__(self, network: nn.Sequential) -> None:
        modules = list(network)
        self.linears: list[nn.Linear] = modules[0::2]
        self.activation = _ACTIVATIONS[type(modules[1])] if len(modules) > 1 else "relu"
        self.parameters = [p for linear in self.linears for p in (linear.weight, linear.bias)]
        first = self.parameters[0]
        self.flat_grad = torch.zeros(
            sum(p.numel() for p in self.parameters), device=first.device, dtype=first.dtype
        )
        self.grads, offset = [], 0
        for p in self.parameters:
            self.grads.append(self.flat_grad[offset : offset + p.numel()].view_as(p))
            offset += p.numel()

    @staticmethod
    def supports(network: nn.Module) -> bool:
        """True for Linear, activation, Linear, ..., Linear with relu or tanh activations."""
        if not isinstance(network, nn.Sequential) or len(network) % 2 == 0:
            return False
        modules = list(network)
        linears, activations = modules[0::2], modules[1::2]
        return (
            all(type(m) is nn.Linear and m.bias is not None for m in linears)
            and all(type(m) in _ACTIVATIONS for m in activations)
            and len({type(m) for m in activations}) <= 1
        )

    def forward(self, x: Tensor) -> Tensor:
        """network(x) with no graph and no module dispatch."""
        last = len(self.linears) - 1
        with torch.no_grad():
            for i, linear in enumerate(self.linears):
                x = torch.addmm(linear.bias, x, linear.weight.t())
                if i < last:
                    x = x.relu_() if self.activation == "relu" else x.tanh_()
        return x

    def forward_numpy(self, obs: np.ndarray) -> np.ndarray:
        """network(obs) for a few rows on the CPU, in numpy: acting one env step at a time,
        torch's per-operation dispatch (~10 us each) costs more than the products (~67 us
        against ~20 us for a 4-256-256-2 network). The weights are read in place, not copied."""
        last = len(self.linears) - 1
        x = np.asarray(obs, dtype=np.float32).reshape(len(obs), -1)
        for i, linear in enumerate(self.linears):
            weight, bias = linear.weight.detach().numpy(), linear.bias.detach().numpy()
            x = x @ weight.T + bias
            if i < last:
                x = np.maximum(x, 0.0, out=x) if self.activation == "relu" else np.tanh(x, out=x)
        return x

    def td_gradients(
        self,
        obs: Tensor,
        actions: Tensor,
        targets: Tensor,
        weights: Tensor | None,
        loss: str,
    ) -> Tensor:
        """Set `param.grad` to the gradient of mean_i w_i loss(Q(s_i, a_i), y_i); returns
        Q(s_i, a_i) (detached)."""
        with torch.no_grad():
            inputs = [obs]  # the input of each linear layer
            x = obs
            last = len(self.linears) - 1
            for i, linear in enumerate(self.linears):
                x = torch.addmm(linear.bias, x, linear.weight.t())
                if i < last:
                    x = x.relu_() if self.activation == "relu" else x.tanh_()
                    inputs.append(x)
            index = actions.unsqueeze(1)
            q_taken = x.gather(1, index).squeeze(1)
            per_sample = LOSS_GRADIENTS[loss](q_taken - targets) / len(q_taken)
            if weights is not None:
                per_sample = per_sample * weights
            grad = torch.zeros_like(x).scatter_(1, index, per_sample.unsqueeze(1))
            for i in range(last, -1, -1):
                torch.mm(grad.t(), inputs[i], out=self.grads[2 * i])
                torch.sum(grad, 0, out=self.grads[2 * i + 1])
                if i > 0:  # back through the layer and the activation before it
                    grad = grad.mm(self.linears[i].weight)
                    if self.activation == "relu":
                        grad = torch.ops.aten.threshold_backward(grad, inputs[i], 0.0)
                    else:
                        grad = torch.ops.aten.tanh_backward(grad, inputs[i])
        for p, g in zip(self.parameters, self.grads, strict=True):
            if p.grad is not g:  # (zero_grad(set_to_none=True) may have dropped them)
                p.grad = g
        return q_taken

    def clip_grad_norm(self, max_norm: float) -> Tensor:
        """torch.nn.utils.clip_grad_norm_ on the flat gradient: one norm, one scale."""
        norm = torch.linalg.vector_norm(self.flat_grad)
        if max_norm != float("inf"):
            self.flat_grad.mul_(torch.clamp(max_norm / (norm + 1e-6), max=1.0))
        return norm
