"""Environment state for checkpoints, without pickle: numbers, strings, numpy arrays and the
bit-generator states of numpy RNGs, read off every layer of every copy of a vector env.

This is what makes a resumed run step its environments exactly as the uninterrupted run would
have: gymnasium's classic-control environments and rlkit's games keep all their state in such
attributes (CartPole's `state` array, TimeLimit's `_elapsed_steps`, the episode statistics of
RecordEpisodeStatistics, each env's `np_random`, FrameStackObservation's deque of frames,
MinAtar's lists of objects and legacy RandomState, an Atari game's emulator as ALE serialises
it). An environment that keeps state in other
objects (a physics engine, a subprocess) is restored only as far as these attributes go; its
episode then continues from a state that may differ.
"""

from __future__ import annotations

import numbers
from collections import deque
from typing import Any

import numpy as np
import torch

_PRIMITIVES = (bool, int, float, str, type(None))


def _layers(env: Any) -> list[Any]:
    """The wrapper chain of one env, outermost first."""
    layers = [env]
    while hasattr(layers[-1], "env") and layers[-1].env is not layers[-1]:
        layers.append(layers[-1].env)
    return layers


def _objects(vector_env: Any) -> dict[str, Any]:
    """Every object whose attributes make up the vector env's state, by a stable name."""
    objects: dict[str, Any] = {}
    for depth, layer in enumerate(_layers(vector_env)):
        objects[f"vector.{depth}"] = layer
        for i, env in enumerate(getattr(layer, "envs", ()) or ()):
            for env_depth, env_layer in enumerate(_layers(env)):
                objects[f"env{i}.{env_depth}"] = env_layer
    return objects


def _restorable(value: Any) -> bool:
    if isinstance(value, (*_PRIMITIVES, np.generic)):
        return True
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "biuf"
    if isinstance(value, np.random.Generator):
        return True
    if isinstance(value, np.random.RandomState):
        return True
    if isinstance(value, list | tuple):
        return all(map(_plain, value))
    if isinstance(value, deque):  # of equal arrays: FrameStackObservation's frames
        return _stackable(list(value))
    return _is_ale(value)


def _is_ale(value: Any) -> bool:
    """ale-py's emulator (an Atari game's `ale`): its state, RNG included, is ALE's own bytes."""
    return type(value).__name__ == "ALEInterface" and hasattr(value, "cloneState")


def _plain(value: Any) -> bool:
    """A number, string, None or a (nested) list or tuple of them: what JSON holds as is."""
    if isinstance(value, list | tuple):
        return all(map(_plain, value))
    if isinstance(value, np.generic):
        return value.dtype.kind in "biuf"
    return isinstance(value, _PRIMITIVES) or (
        isinstance(value, numbers.Number) and not isinstance(value, complex)
    )


def _encode(value: Any) -> Any:
    """A plain value for JSON: numpy scalars as Python numbers, tuples marked."""
    if isinstance(value, tuple):
        return {"tuple": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


def _decode(data: Any) -> Any:
    if isinstance(data, dict):
        if "tuple" in data:
            return tuple(_decode(v) for v in data["tuple"])
        return _number(data)
    if isinstance(data, list):
        return [_decode(v) for v in data]
    return data


def _stackable(items: list) -> bool:
    return (
        len(items) > 0
        and all(isinstance(v, np.ndarray) and v.dtype.kind in "biuf" for v in items)
        and len({(v.shape, v.dtype) for v in items}) == 1
    )


def _number(saved: Any) -> Any:
    """A saved number. Checkpoints written before the checkpoint writer encoded every inf and
    nan itself (rlkit.io.checkpoint.encode_non_finite) held the env's as {"float": "inf"}."""
    return float(saved["float"]) if isinstance(saved, dict) else saved


def get_state(vector_env: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, json) describing the vector env; `set_state` puts it back."""
    tensors: dict[str, torch.Tensor] = {}
    data: dict[str, Any] = {}
    for name, obj in _objects(vector_env).items():
        entry: dict[str, Any] = {}
        for attr, value in vars(obj).items():
            if not _restorable(value):
                continue
            key = f"{name}.{attr}"
            if isinstance(value, np.ndarray):
                tensors[key] = torch.from_numpy(np.ascontiguousarray(value).copy())
                entry[attr] = {"array": key, "dtype": str(value.dtype)}
            elif isinstance(value, np.random.Generator):
                entry[attr] = {"rng": value.bit_generator.state}
            elif isinstance(value, np.generic):
                entry[attr] = {"scalar": value.item(), "dtype": str(value.dtype)}
            elif isinstance(value, deque):
                tensors[key] = torch.from_numpy(np.stack(list(value)))
                entry[attr] = {"deque": key, "dtype": str(value[0].dtype), "maxlen": value.maxlen}
            elif isinstance(value, np.random.RandomState):
                _, keys, pos, has_gauss, gauss = value.get_state(legacy=True)
                tensors[key] = torch.from_numpy(keys.astype(np.int64))
                entry[attr] = {"random_state": key, "pos": int(pos), "has_gauss": int(has_gauss),
                               "gauss": float(gauss)}  # fmt: skip
            elif isinstance(value, list | tuple):
                entry[attr] = {"nested": _encode(value)}
            elif _is_ale(value):  # (ALE's serialisation, no pickle: bytes in a uint8 tensor)
                raw = value.cloneState(include_rng=True).__getstate__()
                tensors[key] = torch.frombuffer(bytearray(raw), dtype=torch.uint8).clone()
                entry[attr] = {"ale": key}
            else:
                entry[attr] = {"value": value}
        data[name] = entry
    return tensors, data


def set_state(vector_env: Any, tensors: dict[str, torch.Tensor], data: dict[str, Any]) -> None:
    objects = _objects(vector_env)
    missing = sorted(set(data) - set(objects))
    if missing:
        raise ValueError(f"the saved environment state does not fit this env (no {missing[0]})")
    for name, entry in data.items():
        obj = objects[name]
        for attr, saved in entry.items():
            if "array" in saved:
                value = tensors[saved["array"]].numpy().astype(saved["dtype"], copy=True)
            elif "rng" in saved:
                value = getattr(obj, attr, None)
                if not isinstance(value, np.random.Generator):  # not created yet in this env
                    value = np.random.Generator(_bit_generator(saved["rng"]))
                value.bit_generator.state = saved["rng"]
            elif "deque" in saved:
                items = tensors[saved["deque"]].numpy().astype(saved["dtype"], copy=True)
                value = deque(list(items), maxlen=saved["maxlen"])
            elif "scalar" in saved:
                value = np.dtype(saved["dtype"]).type(_number(saved["scalar"]))
            elif "random_state" in saved:
                keys = tensors[saved["random_state"]].numpy().astype(np.uint32)
                value = np.random.RandomState()
                value.set_state(
                    ("MT19937", keys, saved["pos"], saved["has_gauss"], _number(saved["gauss"]))
                )
            elif "nested" in saved:
                value = _decode(saved["nested"])
            elif "ale" in saved:  # into the emulator the env already has
                import ale_py

                raw = tensors[saved["ale"]].numpy().tobytes()
                getattr(obj, attr).restoreState(ale_py.ALEState(raw))
                continue
            elif "sequence" in saved:  # (checkpoints written before nested lists were kept)
                items = [_number(v) for v in saved["sequence"]]
                value = tuple(items) if saved["tuple"] else items
            else:
                value = _number(saved["value"])
            setattr(obj, attr, value)
        if hasattr(obj, "checked_step") and hasattr(obj, "_previous_data"):
            # gymnasium's PassiveEnvChecker compares its first step with the reset before it,
            # and its second step with its first, through `_previous_data`, which is not part
            # of the state: the original run made (and checked) those calls, so a run resumed
            # before its first or second step must not check them again.
            obj.checked_step = True
            obj.checked_data_reuse = True


_BIT_GENERATORS = {
    "PCG64": np.random.PCG64,
    "PCG64DXSM": np.random.PCG64DXSM,
    "MT19937": np.random.MT19937,
    "Philox": np.random.Philox,
    "SFC64": np.random.SFC64,
}


def _bit_generator(state: dict[str, Any]) -> np.random.BitGenerator:
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in _BIT_GENERATORS:
        raise ValueError(f"unknown random generator in the saved environment state: {name!r}")
    return _BIT_GENERATORS[name]()
