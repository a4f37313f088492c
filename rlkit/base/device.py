"""Device selection: `auto` means CUDA when available, else CPU."""

from __future__ import annotations

import torch

from rlkit.base.errors import DeviceError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn a config value (`auto`, `cpu`, `cuda`, `cuda:1`) into a `torch.device`.

    Asking for CUDA on a machine without a usable GPU is an error, not a silent CPU fallback:
    a run the user believes is on the GPU must not quietly take ten times as long.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise DeviceError(
            f"device must be a string such as 'auto', 'cpu' or 'cuda', got {device!r}"
        )
    name = device.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(name)
    except RuntimeError:
        raise DeviceError(
            f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'"
        ) from None
    if resolved.type == "cpu":
        return resolved
    if resolved.type != "cuda":
        raise DeviceError(f"unsupported device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if not torch.cuda.is_available():
        raise DeviceError(
            f"device {device!r} was requested but CUDA is not available on this machine "
            "(torch.cuda.is_available() is False); use device 'auto' or 'cpu'"
        )
    if resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise DeviceError(
            f"device {device!r} was requested but only {torch.cuda.device_count()} CUDA "
            "device(s) are visible"
        )
    return resolved


def describe_cpu() -> str:
    """The CPU as results depend on it: model, family/model numbers, the vector instructions
    torch's kernels use, and the core count. Float rounding, and so a learning curve, can
    differ between CPUs; measurements and test logs name the one they ran on."""
    import os
    import platform

    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
                if not line.strip():
                    break  # the first processor is enough
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    numbers = ""
    if "cpu family" in fields and "model" in fields:
        numbers = f" (family {fields['cpu family']}, model {fields['model']})"
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{name}{numbers}, torch kernels {capability}, {os.cpu_count()} cores"
