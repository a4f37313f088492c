"""A plain MLP's forward and backward written out by hand, for the DQN and PPO updates.

On a 64-row batch through a 4-256-256-2 Q-network, autograd's bookkeeping (recording ~30
nodes, allocating every gradient, replaying the graph) and the generic loss and clipping code
cost about as much as the matrix products themselves; on PPO's 64-64 networks they cost
several times more (profiles: benchmarks/README.md). For a plain MLP (Linear layers with relu
or tanh between them) the backward from a gradient on the output is two matrix products and one
fused activation derivative per layer; here it is, with the gradients written straight into a
flat buffer that `param.grad` views, so clipping is one norm. The agents supply the gradient on
the output (DQN: the TD loss's, here; PPO: rlkit.math.policy_gradient.ppo_loss_gradients).
tests/test_mlp_grad.py checks the gradients against autograd.
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


def activation_backward(grad: Tensor, output: Tensor, activation: str) -> Tensor:
    """d loss / d (the activation's input), from d loss / d output and the output ("relu" or
    "tanh"): one fused kernel. (Writing it over `grad` instead of a new buffer was no faster
    in SAC's update: 1.015x the time, median of 40 alternated blocks on the Zen 3.)"""
    if activation == "relu":
        return torch.ops.aten.threshold_backward(grad, output, 0.0)
    return torch.ops.aten.tanh_backward(grad, output)


# d loss(prediction, target) / d prediction per sample, as a function of prediction - target,
# for the losses of rlkit.math.losses (before their mean and importance weights).
LOSS_GRADIENTS: dict[str, Callable[[Tensor], Tensor]] = {
    "mse": lambda error: 2.0 * error,
    "l2": lambda error: 2.0 * error,
    "l1": torch.sign,
    "huber": _huber_grad,
    "smooth_l1": _huber_grad,
    "pseudo_huber": _pseudo_huber_grad,
}

_ACTIVATIONS: dict[type, str] = {nn.ReLU: "relu", nn.Tanh: "tanh"}


class PlainMLP:
    """Forward, backward and gradient norm of an `nn.Sequential` of Linear layers with ReLU or
    Tanh between them (rlkit.nn.networks.mlp), without autograd.

    `flat_grad`: the buffer the gradients live in (views of it become `param.grad`); by default
    one of its own. Several networks trained by one optimizer can share one buffer (PPO's actor
    and critic), so that their global gradient norm is one norm. `gradients=False`: forward only
    (a target network)."""

    def __init__(
        self, network: nn.Sequential, gradients: bool = True, flat_grad: Tensor | None = None
    ) -> None:
        modules = list(network)
        self.linears: list[nn.Linear] = modules[0::2]
        self.activation = _ACTIVATIONS[type(modules[1])] if len(modules) > 1 else "relu"
        # The Parameter objects themselves (module attribute lookups cost ~1 us each; the
        # Parameters stay the same objects when an optimizer re-points their storage).
        self.weights = [linear.weight for linear in self.linears]
        self.biases = [linear.bias for linear in self.linears]
        self.parameters = [p for pair in zip(self.weights, self.biases, strict=True) for p in pair]
        self.numpy_layers = NumpyLayers(self.linears, self.activation)
        self.grads: list[Tensor] = []
        if not gradients:
            return
        first = self.parameters[0]
        n = self.numel(network)
        if flat_grad is None:
            flat_grad = torch.zeros(n, device=first.device, dtype=first.dtype)
        if flat_grad.numel() != n:
            raise ValueError(f"flat_grad has {flat_grad.numel()} elements, the network {n}")
        self.flat_grad = flat_grad
        offset = 0
        for p in self.parameters:
            self.grads.append(flat_grad[offset : offset + p.numel()].view_as(p))
            offset += p.numel()

    @staticmethod
    def numel(network: nn.Module) -> int:
        return sum(p.numel() for p in network.parameters())

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
        return self.forward_saving(x)[0]

    def forward_saving(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """(network(x), the input of each linear layer): what `backward` needs."""
        inputs = [x]
        last = len(self.weights) - 1
        relu = self.activation == "relu"
        with torch.no_grad():
            for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
                x = torch.addmm(bias, x, weight.t())
                if i < last:
                    x = x.relu_() if relu else x.tanh_()
                    inputs.append(x)
        return x, inputs

    def backward(self, grad: Tensor, inputs: list[Tensor]) -> None:
        """Set `param.grad` to the gradient of a loss whose gradient with respect to the output
        is `grad`, for the forward that saved `inputs`."""
        weights, grads = self.weights, self.grads
        with torch.no_grad():
            for i in range(len(weights) - 1, -1, -1):
                torch.mm(grad.t(), inputs[i], out=grads[2 * i])
                torch.sum(grad, 0, out=grads[2 * i + 1])
                if i > 0:  # back through the layer and the activation before it
                    grad = activation_backward(grad.mm(weights[i]), inputs[i], self.activation)
        for p, g in zip(self.parameters, grads, strict=True):
            if p.grad is not g:  # (zero_grad(set_to_none=True) may have dropped them)
                p.grad = g

    def forward_numpy(self, obs: np.ndarray) -> np.ndarray:
        """network(obs) for a few rows on the CPU, in numpy (NumpyLayers)."""
        x = self.numpy_layers.hidden(obs, len(self.linears) - 1)
        weight, bias = self.numpy_layers.views()[-1]
        return x @ weight.T + bias

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
        q_values, inputs = self.forward_saving(obs)
        with torch.no_grad():
            index = actions.unsqueeze(1)
            q_taken = q_values.gather(1, index).squeeze(1)
            per_sample = LOSS_GRADIENTS[loss](q_taken - targets).div_(len(q_taken))
            if weights is not None:
                per_sample.mul_(weights)
            grad = torch.zeros_like(q_values).scatter_(1, index, per_sample.unsqueeze(1))
        self.backward(grad, inputs)
        return q_taken

    def grad_norm(self) -> Tensor:
        """The global 2-norm of the gradients (one norm over the flat buffer)."""
        return torch.linalg.vector_norm(self.flat_grad)

    def scale_grads(self, factor: float) -> None:
        self.flat_grad.mul_(factor)


class NumpyLayers:
    """Linear layers run in numpy for a few rows on the CPU: acting one env step at a time,
    torch's per-operation dispatch (~10 us each) costs more than the products (~20 us against
    ~67 us for a 4-256-256-2 network). The weights are read in place, not copied."""

    def __init__(self, linears: list[nn.Linear], activation: str) -> None:
        if activation not in ("relu", "tanh"):
            raise ValueError(f"NumpyLayers knows relu and tanh, not {activation!r}")
        self.activation = activation
        self.parameters = [p for linear in linears for p in (linear.weight, linear.bias)]
        self._views: list[tuple[np.ndarray, np.ndarray]] = []
        self._pointers: list[int] = []

    def views(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """numpy (weight, bias) views, made again only when a parameter's storage moved (an
        optimizer flattening them, `module.to`): making them costs more than the forward."""
        pointers = [p.data_ptr() for p in self.parameters]
        if pointers != self._pointers:
            arrays = [p.detach().numpy() for p in self.parameters]
            self._views = list(zip(arrays[0::2], arrays[1::2], strict=True))
            self._pointers = pointers
        return self._views

    def hidden(self, obs: np.ndarray, n: int) -> np.ndarray:
        """The first n layers, each followed by the activation."""
        x = np.asarray(obs, dtype=np.float32).reshape(len(obs), -1)
        for weight, bias in self.views()[:n]:
            x = x @ weight.T + bias
            x = np.maximum(x, 0.0, out=x) if self.activation == "relu" else np.tanh(x, out=x)
        return x
