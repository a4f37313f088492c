"""What rlkit's optimizers share: torch.optim.Optimizer semantics on flat buffers.

Each param group's parameters (per device and dtype: a "bucket") are re-pointed at views of one
contiguous tensor, and their optimizer state lives in tensors of the same layout. An update is
then a handful of kernels over the whole bucket instead of several per parameter: on the
4-256-256-2 DQN network that is the difference between ~0.3 ms and well under half of it on CPU
(benchmarks/optim_step.py). Gradients are gathered with one `torch.cat` per bucket, so
`zero_grad(set_to_none=True)` and anything else that replaces `.grad` keep working; where they
already are one buffer in the bucket's layout (rlkit's written-out gradient paths) and the
update only reads them, it reads them there, without the copy.

Everything torch.optim users rely on still holds: `defaults`, param groups with their own
hyperparameters, `add_param_group`, lazily created per-parameter state (`optimizer.state[p]`
holds views into the flat state), `step(closure)`, `state_dict()` / `load_state_dict()` in
torch's format, hooks and lr schedulers. Each subclass writes its update once, as whole-tensor
operations in the same order as torch's single-tensor implementation, so trajectories match
torch.optim to rounding.
"""

from __future__ import annotations

import functools
import math
import numbers
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor


def check_finite_lr(lr: Any) -> None:
    """torch's check (`0.0 <= lr`) lets +inf through; a NaN or infinite rate is never intended."""
    value = float(lr) if isinstance(lr, numbers.Real | Tensor) else lr
    if not isinstance(value, float) or not math.isfinite(value) or value < 0.0:
        raise ValueError(f"Invalid learning rate: {lr}")


def check_range(name: str, value: float, low: float = 0.0, high: float | None = None) -> None:
    """Raise ValueError("Invalid {name}: {value}") unless low <= value (< high), torch-style."""
    ok = isinstance(value, numbers.Real) and math.isfinite(value) and low <= value
    if ok and high is not None:
        ok = value < high
    if not ok:
        raise ValueError(f"Invalid {name}: {value}")


def scalar_dtype() -> torch.dtype:
    """The dtype torch.optim uses for scalar state such as `step` (float32 unless the default is
    float64): kept so that state_dicts are interchangeable with torch's."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


class _Bucket:
    """The parameters of one group that share a device and dtype, flattened."""

    def __init__(self, params: list[Tensor]) -> None:
        self.params = params
        self.numels = [p.numel() for p in params]
        self.offsets = [0]
        for n in self.numels[:-1]:
            self.offsets.append(self.offsets[-1] + n)
        self.flat = torch.empty(0)
        self.flat_grad = torch.empty(0)
        self.state: dict[str, Tensor] = {}  # flat state tensors, by state key
        self.step = 0  # steps taken by every parameter of the bucket (the uniform case)
        # capturable optimizers: the step count as a tensor on the parameters' device, counted
        # there, so a step reads nothing from the host (and can be captured in a CUDA graph).
        self.step_tensor: Tensor | None = None
        self.uniform = True  # False once some parameters stepped without the others
        self.flatten()

    def flatten(self) -> None:
        """(Re-)point the parameters at views of one contiguous tensor, keeping their values."""
        with torch.no_grad():
            self.flat = torch.cat([p.detach().reshape(-1) for p in self.params])
            for p, view in zip(self.params, self._views(self.flat), strict=True):
                p.data = view
        self.flat_grad = torch.empty_like(self.flat)
        self.scratch = torch.empty_like(self.flat)  # for temporaries such as Adam's denominator
        # Gradients found to lie in one buffer in this layout, and that buffer's flat view.
        self._in_place_grads: list[Tensor] | None = None
        self._in_place_flat: Tensor | None = None
        self._ptrs = [p.data_ptr() for p in self.params]

    def intact(self) -> bool:
        """False if something (module.to(), load_state_dict with assign) replaced a parameter's
        storage since flattening; the bucket must then be flattened again."""
        return all(p.data_ptr() == ptr for p, ptr in zip(self.params, self._ptrs, strict=True))

    def _views(self, flat: Tensor) -> list[Tensor]:
        return [
            flat[o : o + n].view_as(p)
            for p, o, n in zip(self.params, self.offsets, self.numels, strict=True)
        ]

    def in_place_flat_grad(self, grads: list[Tensor]) -> Tensor | None:
        """The gradients as one flat tensor without a copy, when they already are consecutive
        views of one buffer in this bucket's layout (rlkit's written-out gradient paths write
        them so: rlkit.nn.mlp_grad); else None. Checked once per new set of gradient tensors."""
        if self._in_place_grads is not None and all(
            g is seen for g, seen in zip(grads, self._in_place_grads, strict=True)
        ):
            return self._in_place_flat
        first = grads[0]
        storage, start = first.untyped_storage().data_ptr(), first.storage_offset()
        for g, offset in zip(grads, self.offsets, strict=True):
            if (
                g.dtype != self.flat.dtype
                or g.device != self.flat.device
                or not g.is_contiguous()
                or g.untyped_storage().data_ptr() != storage
                or g.storage_offset() != start + offset
            ):
                self._in_place_grads = self._in_place_flat = None
                return None
        self._in_place_flat = first.as_strided((self.flat.numel(),), (1,), start)
        self._in_place_grads = list(grads)
        return self._in_place_flat

    def gather_grads(self, grads: list[Tensor]) -> Tensor:
        """One copy of every gradient into the bucket's own flat gradient, which the update may
        then modify in place (weight decay, maximize) without touching `param.grad`."""
        torch.cat(
            [g.view(-1) if g.is_contiguous() else g.reshape(-1) for g in grads], out=self.flat_grad
        )
        return self.flat_grad


def _plain_unless_compiling(method: Callable[..., Any]) -> Callable[..., Any]:
    """torch.optim.Optimizer's `method` without its `torch._disable_dynamo` wrapper while
    torch._dynamo is not loaded. That wrapper imports torch._dynamo at its first call, about a
    second of every training process's start (1.1 s of `rlkit train`'s 3.5 s to its first
    error line, torch 2.13 on a 2-core AMD EPYC), only to keep torch.compile from tracing into
    the method. Where dynamo has not been imported nothing is being compiled, so the plain
    method is the same call; once it has been (a user's torch.compile), torch's wrapped one runs.
    """
    plain = method.__wrapped__  # type: ignore[attr-defined]

    @functools.wraps(plain)
    def call(self, *args: Any, **kwargs: Any) -> Any:
        if "torch._dynamo" in sys.modules:
            return method(self, *args, **kwargs)
        return plain(self, *args, **kwargs)

    return call


_add_param_group = _plain_unless_compiling(torch.optim.Optimizer.add_param_group)
_state_dict = _plain_unless_compiling(torch.optim.Optimizer.state_dict)
_load_state_dict = _plain_unless_compiling(torch.optim.Optimizer.load_state_dict)


class FlatOptimizer(torch.optim.Optimizer):
    """Base class: subclasses define `_init_state` and `_update`.

    `_update(group, param, grad, state, step, scratch)` updates the flat `param` in place from
    the flat `grad` (already negated under `maximize`; the update may overwrite it) and the flat
    `state` tensors; `step` is the 1-based step count and `scratch` a tensor like `param` for
    temporaries. Scalar state (NAdam's mu product) lives in `state` as 0-dim tensors.
    """

    def __init__(self, params, defaults: dict[str, Any]) -> None:
        super().__init__(params, defaults)
        self._buckets: dict[int, list[_Bucket]] = {}
        for index, group in enumerate(self.param_groups):
            self._check_group(group)
            self._buckets[index] = self._make_buckets(group)

    # ----------------------------------------------------------------- set-up

    def _check_group(self, group: dict[str, Any]) -> None:
        for p in group["params"]:
            if torch.is_complex(p):
                raise ValueError(
                    f"{type(self).__name__} does not support complex parameters; "
                    "use torch.view_as_real on them or a torch.optim optimizer"
                )
            if p.is_sparse:
                raise ValueError(f"{type(self).__name__} does not support sparse parameters")

    def _make_buckets(self, group: dict[str, Any]) -> list[_Bucket]:
        by_key: dict[tuple, list[Tensor]] = {}
        for p in group["params"]:
            by_key.setdefault((p.device, p.dtype), []).append(p)
        return [_Bucket(params) for params in by_key.values()]

    zero_grad = _plain_unless_compiling(torch.optim.Optimizer.zero_grad)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        _add_param_group(self, param_group)
        if hasattr(self, "_buckets"):  # not during torch's __init__, which calls this
            index = len(self.param_groups) - 1
            self._check_group(self.param_groups[index])
            self._buckets[index] = self._make_buckets(self.param_groups[index])

    def _init_state(self, group: dict[str, Any], flat: Tensor) -> dict[str, Tensor]:
        """Fresh flat state for a bucket (called at its first step)."""
        raise NotImplementedError

    def _step_dtype(self, group: dict[str, Any], flat: Tensor) -> torch.dtype:
        """dtype of a capturable step count (torch's choice for the same path)."""
        return scalar_dtype()

    def _reads_grad_only(self, group: dict[str, Any], flat: Tensor) -> bool:
        """True if `_update` for this group never writes to its `grad` (nor needs it negated),
        so that it may read `param.grad`'s own memory (see `_Bucket.in_place_flat_grad`)."""
        return False

    def _update(
        self,
        group,
        param: Tensor,
        grad: Tensor,
        state: dict[str, Tensor],
        step: int,
        scratch: Tensor,
    ):
        raise NotImplementedError

    @staticmethod
    def profile_hook_step(func: Callable[..., Any]) -> Callable[..., Any]:
        """torch wraps `step` to run step hooks inside a profiler range. The range costs tens
        of microseconds per step even with no profiler running, a large share of a small
        network's step, so it is entered only while a profiler is on; hooks work as in torch."""
        from itertools import chain

        from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self = args[0]
            if torch.autograd.profiler._is_profiler_enabled:
                with torch.autograd.profiler.record_function(
                    f"Optimizer.step#{type(self).__name__}.step"
                ):
                    return run(*args, **kwargs)
            return run(*args, **kwargs)

        def run(*args: Any, **kwargs: Any) -> Any:
            self = args[0]
            for pre_hook in chain(
                _global_optimizer_pre_hooks.values(), self._optimizer_step_pre_hooks.values()
            ):
                result = pre_hook(self, args, kwargs)
                if result is not None:
                    if not (isinstance(result, tuple) and len(result) == 2):
                        raise RuntimeError(
                            f"{func} must return None or a tuple of (new_args, new_kwargs), "
                            f"but got {result}."
                        )
                    args, kwargs = result
            out = func(*args, **kwargs)
            self._optimizer_step_code()
            for post_hook in chain(
                self._optimizer_step_post_hooks.values(), _global_optimizer_post_hooks.values()
            ):
                post_hook(self, args, kwargs)
            return out

        return wrapper

    # ----------------------------------------------------------------- stepping

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for index, group in enumerate(self.param_groups):
            for bucket in self._buckets[index]:
                self._step_bucket(group, bucket)
        return loss

    def _step_bucket(self, group: dict[str, Any], bucket: _Bucket) -> None:
        grads = [p.grad for p in bucket.params]
        missing = [g is None for g in grads]
        if all(missing):
            return
        if any(g is not None and g.is_sparse for g in grads):
            raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
        if not bucket.intact():
            self._reflatten(bucket)
        if not bucket.state:
            bucket.state = self._init_state(group, bucket.flat)
            self._expose_state(bucket)
        if bucket.uniform and not any(missing):
            bucket.step += 1
            step: int | Tensor = bucket.step
            if group.get("capturable"):
                if bucket.step_tensor is None:
                    dtype = self._step_dtype(group, bucket.flat)
                    bucket.step_tensor = torch.zeros((), dtype=dtype, device=bucket.flat.device)
                    self._expose_state(bucket)
                step = bucket.step_tensor.add_(1)
            # An update that only reads the gradient takes it where it lies when it already is
            # one buffer in the bucket's layout; otherwise one copy into the bucket's own (which
            # the update may then modify: maximize, weight decay).
            grad = None
            if self._reads_grad_only(group, bucket.flat):
                grad = bucket.in_place_flat_grad(grads)
            if grad is None:
                grad = bucket.gather_grads(grads)
                if group["maximize"]:
                    grad.neg_()
            self._update(group, bucket.flat, grad, bucket.state, step, bucket.scratch)
            return
        if group.get("capturable"):
            raise RuntimeError(
                f"{type(self).__name__}(capturable=True) steps all parameters of a group "
                "together; some have no gradient this step"
            )
        self._step_each(group, bucket, missing)

    def _step_each(self, group: dict[str, Any], bucket: _Bucket, missing: list[bool]) -> None:
        """Slow path, when some parameters have no gradient this step: like torch, they are
        left alone (no step count, no moment decay), so each parameter keeps its own count."""
        if bucket.uniform:
            for p in bucket.params:
                state = self.state[p]
                state["step"] = torch.tensor(float(bucket.step), dtype=scalar_dtype())
                for key, value in state.items():
                    if value.dim() == 0 and key != "step":  # scalar state becomes per-parameter
                        state[key] = value.clone()
            bucket.uniform = False
        for i, p in enumerate(bucket.params):
            if missing[i]:
                continue
            state = self.state[p]
            state["step"] += 1
            tensors = {key: value for key, value in state.items() if key != "step"}
            grad = p.grad.reshape(-1).clone()
            if group["maximize"]:
                grad.neg_()
            start, end = bucket.offsets[i], bucket.offsets[i] + bucket.numels[i]
            flat_tensors = {
                key: value.reshape(-1) if value.dim() else value for key, value in tensors.items()
            }
            step = int(state["step"].item())
            self._update(
                group, bucket.flat[start:end], grad, flat_tensors, step, bucket.scratch[start:end]
            )

    def _reflatten(self, bucket: _Bucket) -> None:
        old_state = {key: value.clone() for key, value in bucket.state.items()}
        bucket.flatten()
        if old_state:
            bucket.state = {key: value.to(bucket.flat.device) for key, value in old_state.items()}
            self._expose_state(bucket)

    # ----------------------------------------------------------------- state

    def _expose_state(self, bucket: _Bucket) -> None:
        """Per-parameter state entries as views of the bucket's flat state (torch's layout)."""
        for p, o, n in zip(bucket.params, bucket.offsets, bucket.numels, strict=True):
            entry: dict[str, Any] = {}
            for key, flat in bucket.state.items():
                if flat.dim() == 0:  # scalar state shared by the bucket (NAdam's mu_product)
                    entry[key] = flat
                else:
                    entry[key] = flat[o : o + n].view_as(p)
            if bucket.step_tensor is not None:  # capturable: the device count itself
                entry["step"] = bucket.step_tensor
            elif bucket.uniform:
                entry["step"] = torch.tensor(float(bucket.step), dtype=scalar_dtype())
            else:
                entry["step"] = self.state[p].get("step", torch.tensor(0.0, dtype=scalar_dtype()))
            self.state[p] = entry

    def _sync_steps(self) -> None:
        for buckets in self._buckets.values():
            for bucket in buckets:
                if bucket.state and bucket.uniform and bucket.step_tensor is None:
                    for p in bucket.params:
                        self.state[p]["step"] = torch.tensor(
                            float(bucket.step), dtype=scalar_dtype()
                        )

    def state_dict(self) -> dict[str, Any]:
        self._sync_steps()
        return _state_dict(self)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        _load_state_dict(self, state_dict)  # torch casts each value to its parameter's device
        for index, group in enumerate(self.param_groups):
            for bucket in self._buckets[index]:
                self._adopt_loaded_state(group, bucket)

    def _adopt_loaded_state(self, group: dict[str, Any], bucket: _Bucket) -> None:
        """Copy the per-parameter state torch loaded back into the bucket's flat tensors."""
        if not bucket.intact():
            bucket.flatten()
        loaded = [self.state.get(p) for p in bucket.params]
        if not any(loaded):
            bucket.state, bucket.step, bucket.uniform = {}, 0, True
            return
        if not all(loaded):
            raise ValueError("the loaded state covers only some of a parameter group's parameters")
        bucket.state = self._init_state(group, bucket.flat)
        for key, flat in bucket.state.items():
            if flat.dim() == 0:
                flat.copy_(loaded[0][key])
                continue
            for entry, o, n in zip(loaded, bucket.offsets, bucket.numels, strict=True):
                flat[o : o + n].copy_(entry[key].reshape(-1))
        steps = [float(entry["step"]) for entry in loaded]
        bucket.uniform = all(s == steps[0] for s in steps)
        bucket.step = int(steps[0]) if bucket.uniform else 0
        bucket.step_tensor = None
        if group.get("capturable") and bucket.uniform:
            dtype = self._step_dtype(group, bucket.flat)
            bucket.step_tensor = torch.full(
                (), float(bucket.step), dtype=dtype, device=bucket.flat.device
            )
        if not bucket.uniform:
            for p, entry in zip(bucket.params, loaded, strict=True):
                self.state[p]["step"] = entry["step"]
        self._expose_state(bucket)
