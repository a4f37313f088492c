"""rlkit's optimizers: the update rules of the notes (reference 000-002), on flat buffers.

Each `_update` is the whole algorithm, written with the same operations in the same order as
torch.optim's single-tensor implementation, so that trajectories agree with torch to rounding
(tests/test_optim.py checks 500 steps in float64 and float32). Constructor checks use torch's
wording ("Invalid learning rate: -0.1") and also refuse NaN and infinite learning rates.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rlkit.optim.base import FlatOptimizer, check_finite_lr, check_range, scalar_dtype

# sqrt(x) + eps where x holds zeros (a second moment of weights whose gradient is always zero: a
# dead ReLU unit, an input that never varies) takes torch's slow path on float32 zeros on the
# CPU: on an Intel Xeon (family 6, model 106) 135,000 values a third of them zero took ~430 us
# in torch.sqrt against ~60 us with the zeros first raised to float32's smallest normal number.
# Its root, 1.1e-19, then vanishes when eps is added (it is below half a unit in the last place
# of any eps >= 1e-8, also after Adam's bias correction), so the result is the same to the bit;
# with a smaller eps, or in float64, the plain root is taken.
_TINY = torch.finfo(torch.float32).tiny


def _root(x: Tensor, eps: float, out: Tensor | None = None) -> Tensor:
    """sqrt(x) (into `out`, or in place when None), fast on zeros where eps hides the change."""
    if x.dtype == torch.float32 and x.device.type == "cpu" and eps >= 1e-8:
        raised = torch.clamp(x, min=_TINY, out=out) if out is not None else x.clamp_(min=_TINY)
        return raised.sqrt_()
    return torch.sqrt(x, out=out) if out is not None else x.sqrt_()


def _check_betas(betas: tuple[float, float]) -> None:
    if not isinstance(betas, tuple | list) or len(betas) != 2:
        raise ValueError(f"Invalid betas: {betas}; expected two numbers")
    for index, beta in enumerate(betas):
        check_range(f"beta parameter at index {index}", beta, 0.0, 1.0)


def _fused_kernel_supports(param: Tensor) -> bool:
    """True where torch has a fused Adam kernel for `param` (and this torch has it at all)."""
    return (
        param.device.type in ("cpu", "cuda")
        and param.dtype in (torch.float32, torch.float64)
        and hasattr(torch, "_fused_adam_")
    )


class SGD(FlatOptimizer):
    """Stochastic gradient descent with momentum (heavy ball or Nesterov) and weight decay.

    With momentum mu and dampening tau:  b <- mu b + (1 - tau) g  (b = g at the first step),
    then  theta <- theta - lr * b,  or with Nesterov  theta <- theta - lr * (g + mu b).
    Notes 002's momentum form with (1 - beta) is dampening = momentum.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        check_finite_lr(lr)
        check_range("momentum value", momentum)
        check_range("dampening value", dampening)
        check_range("weight_decay value", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(
            lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
            nesterov=nesterov, maximize=maximize,
        )  # fmt: skip
        super().__init__(params, defaults)

    def _init_state(self, group: dict[str, Any], flat: Tensor) -> dict[str, Tensor]:
        if group["momentum"] == 0:
            return {}
        return {"momentum_buffer": torch.zeros_like(flat)}

    def _update(self, group, param, grad, state, step, scratch):
        if group["weight_decay"] != 0:
            grad.add_(param, alpha=group["weight_decay"])
        momentum = group["momentum"]
        if momentum != 0:
            buf = state["momentum_buffer"]
            if step == 1:
                buf.copy_(grad)
            else:
                buf.mul_(momentum).add_(grad, alpha=1 - group["dampening"])
            grad = grad.add_(buf, alpha=momentum) if group["nesterov"] else buf
        param.add_(grad, alpha=-group["lr"])


class Adagrad(FlatOptimizer):
    """Adagrad: per-coordinate rates from the sum of squared gradients.

    s <- s + g^2;  theta <- theta - lr_t g / (sqrt(s) + eps),  lr_t = lr / (1 + (t - 1) lr_decay).
    """

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
    ) -> None:
        check_finite_lr(lr)
        check_range("lr_decay value", lr_decay)
        check_range("weight_decay value", weight_decay)
        check_range("initial_accumulator_value value", initial_accumulator_value)
        check_range("epsilon value", eps)
        defaults = dict(
            lr=lr, lr_decay=lr_decay, weight_decay=weight_decay, eps=eps,
            initial_accumulator_value=initial_accumulator_value, maximize=maximize,
        )  # fmt: skip
        super().__init__(params, defaults)

    def _init_state(self, group, flat):
        return {"sum": torch.full_like(flat, group["initial_accumulator_value"])}

    def _update(self, group, param, grad, state, step, scratch):
        if group["weight_decay"] != 0:
            grad.add_(param, alpha=group["weight_decay"])
        clr = group["lr"] / (1 + (step - 1) * group["lr_decay"])
        state_sum = state["sum"]
        state_sum.addcmul_(grad, grad, value=1)
        std = _root(state_sum, group["eps"], out=scratch).add_(group["eps"])
        param.addcdiv_(grad, std, value=-clr)


class RMSprop(FlatOptimizer):
    """RMSProp: divide by a running root mean square of the gradients.

    v <- alpha v + (1 - alpha) g^2; centered subtracts the squared running mean of g;
    theta <- theta - lr g / (sqrt(v) + eps), or through a momentum buffer b <- mu b + g / (...).
    """

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        check_finite_lr(lr)
        check_range("epsilon value", eps)
        check_range("momentum value", momentum)
        check_range("weight_decay value", weight_decay)
        check_range("alpha value", alpha)
        defaults = dict(
            lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
            centered=centered, maximize=maximize,
        )  # fmt: skip
        super().__init__(params, defaults)

    def _init_state(self, group, flat):
        state = {"square_avg": torch.zeros_like(flat)}
        if group["momentum"] > 0:
            state["momentum_buffer"] = torch.zeros_like(flat)
        if group["centered"]:
            state["grad_avg"] = torch.zeros_like(flat)
        return state

    def _update(self, group, param, grad, state, step, scratch):
        alpha = group["alpha"]
        if group["weight_decay"] != 0:
            grad.add_(param, alpha=group["weight_decay"])
        square_avg = state["square_avg"]
        square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
        if group["centered"]:
            grad_avg = state["grad_avg"]
            grad_avg.lerp_(grad, 1 - alpha)
            # (A difference that rounding makes negative is raised too, where torch.optim's
            # root is NaN.)
            avg = torch.addcmul(square_avg, grad_avg, grad_avg, value=-1, out=scratch)
            avg = _root(avg, group["eps"])
        else:
            avg = _root(square_avg, group["eps"], out=scratch)
        avg = avg.add_(group["eps"])
        if group["momentum"] > 0:
            buf = state["momentum_buffer"]
            buf.mul_(group["momentum"]).addcdiv_(grad, avg)
            param.add_(buf, alpha=-group["lr"])
        else:
            param.addcdiv_(grad, avg, value=-group["lr"])


class Adam(FlatOptimizer):
    """Adam (Kingma & Ba, notes 001): bias-corrected first and second moment estimates.

    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
    theta <- theta - lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps).
    `amsgrad` uses the running maximum of v; `decoupled_weight_decay` is AdamW.

    `fused`: None (default) runs the whole update as one kernel (torch's fused Adam, on the flat
    buffer) wherever torch has one, CPU and CUDA float tensors; True requires it; False runs
    the update written out below, op by op, bit for bit torch's single-tensor Adam. The fused
    kernel computes the same formula in one pass instead of seven (on the 67k-parameter DQN
    network ~25 us instead of ~190 us per step on CPU, benchmarks/optim_step.py) and agrees
    with the written-out update to rounding (tests/test_optim.py).

    `capturable`: as in torch.optim, a step that reads nothing from the host, so that it can
    be captured in a CUDA graph: the step count is a tensor on the parameters' device, counted
    there; the bias corrections are computed there; the learning rate may be a 0-dim tensor on
    the device (a scheduler then writes into it). Same results as the default, to rounding:
    the fused path is torch's Adam(capturable=True, fused=True) to the bit, the written-out one
    torch's capturable single-tensor formula.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
        fused: bool | None = None,
        capturable: bool = False,
    ) -> None:
        check_finite_lr(lr)
        check_range("epsilon value", eps)
        _check_betas(betas)
        check_range("weight_decay value", weight_decay)
        if fused not in (None, True, False):
            raise ValueError(f"Invalid fused: {fused!r}; expected true, false or null")
        if isinstance(lr, Tensor) and not capturable and lr.device.type != "cpu":
            raise ValueError("lr as a tensor on a device needs capturable=True")
        defaults = dict(
            lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
            maximize=maximize, decoupled_weight_decay=decoupled_weight_decay, fused=fused,
            capturable=bool(capturable),
        )  # fmt: skip
        super().__init__(params, defaults)
        if fused:
            for group in self.param_groups:
                for p in group["params"]:
                    if not _fused_kernel_supports(p):
                        raise RuntimeError(
                            "fused=True requires float32 or float64 parameters on CPU or CUDA, "
                            f"got {p.dtype} on {p.device}"
                        )

    def _init_state(self, group, flat):
        state = {"exp_avg": torch.zeros_like(flat), "exp_avg_sq": torch.zeros_like(flat)}
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = torch.zeros_like(flat)
        return state

    def _update(self, group, param, grad, state, step, scratch):
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        if self._fused(group, param):
            self._fused_update(group, param, grad, state, step)
            return
        if group["weight_decay"] != 0:
            if group["decoupled_weight_decay"]:
                param.mul_(1 - lr * group["weight_decay"])
            else:
                grad.add_(param, alpha=group["weight_decay"])
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        second = exp_avg_sq
        if group["amsgrad"]:
            second = state["max_exp_avg_sq"]
            torch.maximum(second, exp_avg_sq, out=second)
        denom = _root(second, eps, out=scratch)
        if group.get("capturable"):
            # torch's capturable order: bias corrections from the step tensor, on the device;
            # no host read anywhere.
            step_size_neg = (lr / (1 - torch.pow(beta1, step))).neg()
            bias_correction2_sqrt = (1 - torch.pow(beta2, step)).sqrt()
            denom.div_(bias_correction2_sqrt * step_size_neg).add_(eps / step_size_neg)
            param.addcdiv_(exp_avg, denom)
            return
        bias_correction1 = 1 - beta1**step
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        denom.div_(bias_correction2_sqrt).add_(eps)
        param.addcdiv_(exp_avg, denom, value=-lr / bias_correction1)

    def _step_dtype(self, group, flat):
        return torch.float32 if self._fused(group, flat) else scalar_dtype()  # (it reads float32)

    def _reads_grad_only(self, group, flat):
        # The fused kernel reads the gradient only (weight decay included); maximize would
        # negate it first.
        return self._fused(group, flat) and not group["maximize"]

    @staticmethod
    def _fused(group, flat):
        """This group's update runs torch's fused kernel (fused: null or true, where it exists)."""
        return group.get("fused") is not False and _fused_kernel_supports(flat)

    @staticmethod
    def _fused_update(group, param, grad, state, step):
        """The update above in one kernel. `grad` is already negated under maximize."""
        kernel = torch._fused_adamw_ if group["decoupled_weight_decay"] else torch._fused_adam_
        beta1, beta2 = group["betas"]
        amsgrad = [state["max_exp_avg_sq"]] if group["amsgrad"] else []
        lr = group["lr"]
        if isinstance(step, Tensor):  # capturable: the count already lives on the device
            step_tensor = step
        else:  # the kernel reads the step count from a tensor on the parameters' device
            step_tensor = torch.full((), float(step), dtype=torch.float32, device=param.device)
            lr = float(lr)
        kernel(
            [param], [grad], [state["exp_avg"]], [state["exp_avg_sq"]], amsgrad, [step_tensor],
            lr=lr, beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"],
            eps=group["eps"], amsgrad=group["amsgrad"], maximize=False,
        )  # fmt: skip


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): theta <- theta (1 - lr wd) first."""

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        fused: bool | None = None,
        capturable: bool = False,
    ) -> None:
        super().__init__(
            params, lr, betas, eps, weight_decay, amsgrad,
            maximize=maximize, decoupled_weight_decay=True, fused=fused, capturable=capturable,
        )  # fmt: skip


class NAdam(FlatOptimizer):
    """Adam with Nesterov momentum (Dozat 2016).

    By default as torch defines it: the momentum coefficient warms up,
    mu_t = b1 (1 - 0.5 * 0.96^(t * momentum_decay)), and the update combines the current gradient
    and the moment with the products of the mu's. With `dozat=True`, the plain form of the
    notes (001): theta <- theta - lr / (sqrt(v_hat) + eps) * (b1 m_hat + (1 - b1) g / (1 - b1^t)).
    """

    def __init__(
        self,
        params,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
        dozat: bool = False,
    ) -> None:
        check_finite_lr(lr)
        check_range("epsilon value", eps)
        _check_betas(betas)
        check_range("weight_decay value", weight_decay)
        check_range("momentum_decay value", momentum_decay)
        defaults = dict(
            lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
            momentum_decay=momentum_decay, decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize, dozat=dozat,
        )  # fmt: skip
        super().__init__(params, defaults)

    def _init_state(self, group, flat):
        return {
            "mu_product": torch.ones((), dtype=scalar_dtype()),
            "exp_avg": torch.zeros_like(flat),
            "exp_avg_sq": torch.zeros_like(flat),
        }

    def _update(self, group, param, grad, state, step, scratch):
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        if group["weight_decay"] != 0:
            if group["decoupled_weight_decay"]:
                param.mul_(1 - lr * group["weight_decay"])
            else:
                grad.add_(param, alpha=group["weight_decay"])
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        bias_correction2 = 1 - beta2**step
        if group["dozat"]:
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = _root(torch.div(exp_avg_sq, bias_correction2, out=scratch), eps).add_(eps)
            bias_correction1 = 1 - beta1**step
            param.addcdiv_(exp_avg, denom, value=-lr * beta1 / bias_correction1)
            param.addcdiv_(grad, denom, value=-lr * (1 - beta1) / bias_correction1)
            return
        mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * group["momentum_decay"])))
        mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * group["momentum_decay"])))
        mu_product = state["mu_product"]
        mu_product *= mu  # a scalar tensor, as in torch, so its rounding matches
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = _root(torch.div(exp_avg_sq, bias_correction2, out=scratch), eps)
        mu_product_value = mu_product.item()
        mu_product_next = mu_product_value * mu_next
        denom.add_(eps)
        param.addcdiv_(grad, denom, value=-lr * (1.0 - mu) / (1.0 - mu_product_value))
        param.addcdiv_(exp_avg, denom, value=(-lr * mu_next) / (1.0 - mu_product_next))
