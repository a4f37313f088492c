"""Saving and loading tensors plus JSON metadata without pickle.

Files are safetensors: a JSON header, then raw tensor bytes. Loading parses JSON and copies
bytes; nothing in the file can run code. Our metadata (config, counters) lives in the header's
`__metadata__` as one JSON string. Writes are atomic: a temp file in the same folder, fsync,
then os.replace, so a crash leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as _load_bytes
from safetensors.torch import save as _save_bytes

from rlkit.base.errors import AgentFileError
from rlkit.base.files import atomic_write_bytes

METADATA_KEY = "rlkit"


def save_tensors(
    path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]
) -> None:
    """Atomically write `tensors` (moved to CPU, made contiguous) and JSON `metadata`."""
    cpu_tensors = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    header = {METADATA_KEY: json.dumps(metadata, sort_keys=True)}
    atomic_write_bytes(path, _save_bytes(cpu_tensors, metadata=header))


def load_tensors(
    path: str | Path, device: torch.device | str = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by `save_tensors`; AgentFileError with the reason if it is not one."""
    path = Path(path)
    if not path.exists():
        raise AgentFileError(f"no such file: {path}")
    if path.is_dir():
        raise AgentFileError(f"expected a file, got a folder: {path}")
    data = path.read_bytes()
    if data[:4] == b"PK\x03\x04":  # a zip archive's signature
        raise AgentFileError(
            f"{path} is a zip archive (Stable-Baselines3's model.save and torch.save write "
            "those); rlkit reads its own safetensors agent files and never unpickles, which "
            "loading one would need"
        )
    try:
        tensors = _load_bytes(data)
        header = _read_header(data)
    except (SafetensorError, ValueError, UnicodeDecodeError) as error:
        raise AgentFileError(
            f"{path} is not a readable rlkit file (expected safetensors): {error}"
        ) from None
    raw = (header.get("__metadata__") or {}).get(METADATA_KEY)
    if raw is None:
        raise AgentFileError(f"{path} is a safetensors file but not one written by rlkit")
    try:
        metadata = json.loads(raw)
    except json.JSONDecodeError as error:
        raise AgentFileError(f"{path}: corrupt rlkit metadata: {error}") from None
    return {name: t.to(device) for name, t in tensors.items()}, metadata


def _read_header(data: bytes) -> dict[str, Any]:
    if len(data) < 8:
        raise ValueError("file too short")
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8:
        raise ValueError("header size larger than the file")
    return json.loads(data[8 : 8 + size].decode("utf-8"))
