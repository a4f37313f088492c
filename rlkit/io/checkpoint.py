"""Training checkpoints: everything needed to continue a run exactly, written so that a crash,
a kill or a full disk never leaves a checkpoint that looks good but is not.

A checkpoint is two files in run_dir/checkpoints/:
  step_000000050000.safetensors  all tensors, plus the JSON state in the safetensors header
  step_000000050000.json         the manifest: format, step, size and SHA-256 of the first file
Both are written atomically (temp file in the same folder, fsync, os.replace), the tensor file
first: the manifest is the commit point. A checkpoint counts only if its manifest parses and
the tensor file has exactly the size and hash it names, so a truncated or flipped file is
skipped, never loaded. Nothing is unpickled: tensors come from safetensors, the rest is JSON.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from rlkit.base.errors import AgentFileError
from rlkit.base.files import atomic_write_bytes
from rlkit.io.serialization import METADATA_KEY

CHECKPOINT_FORMAT = "rlkit.checkpoint"
CHECKPOINT_VERSION = 1
_NAME = re.compile(r"^step_(\d{12})\.json$")


# ----------------------------------------------------------------------------- nested state


def flatten_state(state: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor (and numpy array) in a nested dict/list by a reference, collecting
    the tensors under dotted names; what remains is plain JSON."""
    if isinstance(state, torch.Tensor):
        tensors[prefix] = state.detach().to("cpu").clone()
        return {"__tensor__": prefix}
    if isinstance(state, np.ndarray):
        tensors[prefix] = torch.from_numpy(np.ascontiguousarray(state).copy())
        return {"__ndarray__": prefix, "dtype": str(state.dtype)}
    if isinstance(state, dict):
        for key in state:
            if not isinstance(key, str | int):
                raise TypeError(f"state key {key!r} at {prefix} is not a string or integer")
        return {
            "__dict__": [[k, flatten_state(v, f"{prefix}.{k}", tensors)] for k, v in state.items()]
        }
    if isinstance(state, list | tuple):
        items = [flatten_state(v, f"{prefix}.{i}", tensors) for i, v in enumerate(state)]
        return {"__tuple__": items} if isinstance(state, tuple) else items
    if isinstance(state, np.generic):
        return state.item()
    if state is None or isinstance(state, bool | int | float | str):
        return state
    raise TypeError(f"cannot checkpoint {type(state).__name__} at {prefix}")


def unflatten_state(data: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(data, list):
        return [unflatten_state(v, tensors) for v in data]
    if isinstance(data, dict):
        if "__tensor__" in data:
            return tensors[data["__tensor__"]]
        if "__ndarray__" in data:
            return tensors[data["__ndarray__"]].numpy().astype(data["dtype"], copy=True)
        if "__dict__" in data:
            return {k: unflatten_state(v, tensors) for k, v in data["__dict__"]}
        if "__tuple__" in data:
            return tuple(unflatten_state(v, tensors) for v in data["__tuple__"])
        raise AgentFileError("corrupt checkpoint state: unknown entry")
    return data


def encode_non_finite(data: Any) -> Any:
    """The JSON state with every float that is inf or nan written as {"__float__": "inf"}:
    strict JSON has no such numbers, and the state holds them legitimately (an env attribute
    such as Hopper's healthy z range, (0.7, inf); a scheduler's or optimizer's setting).
    `decode_non_finite`, the reader's object hook, turns them back into floats."""
    if isinstance(data, float) and not math.isfinite(data):
        return {"__float__": repr(data)}
    if isinstance(data, dict):
        return {key: encode_non_finite(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [encode_non_finite(value) for value in data]
    return data


def decode_non_finite(entry: dict[str, Any]) -> Any:
    """json.loads object hook: {"__float__": "inf"} -> inf (see `encode_non_finite`)."""
    if len(entry) == 1 and "__float__" in entry:
        value = entry["__float__"]
        if value in ("inf", "-inf", "nan"):
            return float(value)
        raise ValueError(f"{value!r} in a non-finite float entry is not inf, -inf or nan")
    return entry


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """No NaN or inf in any floating-point tensor."""
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


# ----------------------------------------------------------------------------- files


@dataclass
class CheckpointInfo:
    step: int
    manifest: Path
    data: Path


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def write_checkpoint(
    run_dir: str | Path,
    step: int,
    tensors: dict[str, torch.Tensor],
    state: dict[str, Any],
    keep_last: int = 3,
) -> Path:
    """Write a checkpoint for `step` and keep the newest `keep_last`; returns the manifest."""
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:012d}"
    header = {METADATA_KEY: json.dumps(encode_non_finite(state), sort_keys=True, allow_nan=False)}
    payload = save_safetensors({k: v.contiguous() for k, v in tensors.items()}, metadata=header)
    atomic_write_bytes(folder / f"{name}.safetensors", payload)
    manifest = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "step": step,
        "file": f"{name}.safetensors",
        "bytes": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    manifest_path = folder / f"{name}.json"
    atomic_write_bytes(manifest_path, json.dumps(manifest, indent=1).encode())
    prune_checkpoints(run_dir, keep_last)
    return manifest_path


def list_checkpoints(run_dir: str | Path) -> list[CheckpointInfo]:
    """Checkpoints with a manifest, oldest first (not yet verified)."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _NAME.match(path.name)
        if match:
            step = int(match.group(1))
            found.append(CheckpointInfo(step, path, path.with_suffix(".safetensors")))
    return sorted(found, key=lambda info: info.step)


def prune_checkpoints(run_dir: str | Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` checkpoints (manifest first, so a checkpoint that
    is half deleted is already invalid)."""
    for info in list_checkpoints(run_dir)[:-keep_last] if keep_last > 0 else []:
        info.manifest.unlink(missing_ok=True)
        info.data.unlink(missing_ok=True)


def remove_stray_files(run_dir: str | Path) -> list[Path]:
    """Delete temp files of interrupted writes and tensor files without a manifest."""
    folder = checkpoint_dir(run_dir)
    removed = []
    if not folder.is_dir():
        return removed
    manifests = {info.data.name for info in list_checkpoints(run_dir)}
    for path in folder.iterdir():
        stray = path.name.endswith(".tmp") or (
            path.suffix == ".safetensors" and path.name not in manifests
        )
        if stray:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def verify_checkpoint(info: CheckpointInfo) -> str | None:
    """None if the checkpoint is intact, else the reason it is not."""
    try:
        manifest = json.loads(info.manifest.read_text())
    except (OSError, ValueError) as error:
        return f"unreadable manifest ({error})"
    if not isinstance(manifest, dict) or manifest.get("format") != CHECKPOINT_FORMAT:
        return "not an rlkit checkpoint manifest"
    if manifest.get("version") != CHECKPOINT_VERSION:
        return f"unsupported checkpoint version {manifest.get('version')!r}"
    if manifest.get("file") != info.data.name or manifest.get("step") != info.step:
        return "manifest does not match its file name"
    if not info.data.is_file():
        return "tensor file missing"
    size = info.data.stat().st_size
    if size != manifest.get("bytes"):
        return f"tensor file is {size} bytes, the manifest says {manifest.get('bytes')}"
    digest = hashlib.sha256(info.data.read_bytes()).hexdigest()
    if digest != manifest.get("sha256"):
        return "checksum mismatch (the tensor file was modified or damaged)"
    return None


def newest_good_checkpoint(run_dir: str | Path) -> tuple[CheckpointInfo | None, list[str]]:
    """The newest intact checkpoint, and why each newer one was skipped."""
    skipped = []
    for info in reversed(list_checkpoints(run_dir)):
        reason = verify_checkpoint(info)
        if reason is None:
            return info, skipped
        skipped.append(f"{info.manifest.name}: {reason}")
    return None, skipped


def read_checkpoint(info: CheckpointInfo) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and state of a checkpoint, verified first; AgentFileError if it is not good."""
    reason = verify_checkpoint(info)
    if reason is not None:
        raise AgentFileError(f"checkpoint {info.manifest} is not usable: {reason}")
    payload = info.data.read_bytes()
    try:
        tensors = load_safetensors(payload)
        size = int.from_bytes(payload[:8], "little")
        header = json.loads(payload[8 : 8 + size].decode("utf-8"))
        state = json.loads(header["__metadata__"][METADATA_KEY], object_hook=decode_non_finite)
    except (SafetensorError, ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
        raise AgentFileError(
            f"checkpoint {info.data} is not a readable rlkit checkpoint: {error}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise AgentFileError(f"checkpoint {info.data} is not an rlkit checkpoint")
    return tensors, state
