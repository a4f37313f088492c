"""Hostile files: checkpoints, agent files and configs crafted to run code or to look valid
while damaged. Each must give a clear one-line error (exit 2) through the real CLI, and none
may create the sentinel file its payload would write."""

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import agents
from rlkit.io.checkpoint import list_checkpoints

ROOT = Path(__file__).resolve().parents[1]


class _Payload:
    """Unpickling this runs a shell command that creates `sentinel`."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


def _pickle_payload(sentinel: Path) -> bytes:
    return pickle.dumps({"q_net.0.weight": _Payload(sentinel)})


def _yaml_payload(sentinel: Path) -> str:
    return f'!!python/object/apply:os.system ["touch {sentinel}"]\n'


def test_the_payloads_are_live(tmp_path):
    """The payloads do run code when loaded the unsafe way, so the tests below can fail."""
    sentinel = tmp_path / "pwned"
    pickle.loads(_pickle_payload(sentinel))
    assert sentinel.exists()
    sentinel.unlink()
    yaml.unsafe_load(_yaml_payload(sentinel))
    assert sentinel.exists()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A real run folder with two checkpoints and a final agent."""
    path = tmp_path_factory.mktemp("hostile") / "run"
    agent = agents.DQN(
        env="CartPole-v1", seed=0, device="cpu", learning_starts=100, buffer_size=2000,
        network={"hidden_sizes": [16]},
    )  # fmt: skip
    agent.learn(600, run_dir=path, checkpoint_interval=300, extra_config={"eval_episodes": 0})
    agent.save(path / "agent.safetensors")
    return path


def _rewrite(info, data: bytes, fix_manifest: bool) -> None:
    """Replace a checkpoint's tensor file; with fix_manifest, also make its manifest vouch for
    the new bytes (what an attacker who hands you a whole run folder can do)."""
    info.data.write_bytes(data)
    if fix_manifest:
        manifest = json.loads(info.manifest.read_text())
        manifest.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
        info.manifest.write_text(json.dumps(manifest))


def _only_newest(run: Path):
    """Keep only the newest checkpoint, so that a damaged one cannot fall back to another."""
    infos = list_checkpoints(run)
    for info in infos[:-1]:
        info.manifest.unlink()
        info.data.unlink()
    return infos[-1]


def _pickled_checkpoint(run: Path, sentinel: Path) -> list[str]:
    _rewrite(_only_newest(run), _pickle_payload(sentinel), fix_manifest=True)
    return ["train", "--resume", run]


def _pickled_agent_file(run: Path, sentinel: Path) -> list[str]:
    (run / "agent.safetensors").write_bytes(_pickle_payload(sentinel))
    return ["eval", run / "agent.safetensors"]


def _yaml_config(run: Path, sentinel: Path) -> list[str]:
    config = run.parent / "evil.yaml"
    config.write_text(_yaml_payload(sentinel))
    return ["train", config]


def _yaml_run_config(run: Path, sentinel: Path) -> list[str]:
    (run / "config.yaml").write_text("agent: dqn\nenv: " + _yaml_payload(sentinel))
    return ["train", "--resume", run]


def _truncated_checkpoint(run: Path, sentinel: Path) -> list[str]:
    info = _only_newest(run)
    _rewrite(info, info.data.read_bytes()[:5000], fix_manifest=False)
    return ["train", "--resume", run]


def _flipped_bytes(run: Path, sentinel: Path) -> list[str]:
    info = _only_newest(run)
    data = bytearray(info.data.read_bytes())
    data[len(data) // 2] ^= 0xFF
    _rewrite(info, bytes(data), fix_manifest=False)
    return ["train", "--resume", run]


def _huge_header(run: Path, sentinel: Path) -> list[str]:
    data = (2**60).to_bytes(8, "little") + b'{"__metadata__": {}}'
    _rewrite(_only_newest(run), data, fix_manifest=True)
    return ["train", "--resume", run]


def _huge_header_agent_file(run: Path, sentinel: Path) -> list[str]:
    (run / "agent.safetensors").write_bytes((2**60).to_bytes(8, "little") + b"{}")
    return ["eval", run]


def _manifest_points_elsewhere(run: Path, sentinel: Path) -> list[str]:
    info = _only_newest(run)
    manifest = json.loads(info.manifest.read_text())
    manifest["file"] = "../../agent.safetensors"
    info.manifest.write_text(json.dumps(manifest))
    return ["train", "--resume", run]


def _dangling_tensor_reference(run: Path, sentinel: Path) -> list[str]:
    """Valid safetensors whose JSON state names tensors that are not there."""
    from safetensors.torch import load, save

    info = _only_newest(run)
    payload = info.data.read_bytes()
    size = int.from_bytes(payload[:8], "little")
    metadata = json.loads(payload[8 : 8 + size])["__metadata__"]
    tensors = {k: v for k, v in load(payload).items() if not k.startswith("optimizer.")}
    _rewrite(info, save(tensors, metadata=metadata), fix_manifest=True)
    return ["train", "--resume", run]


def _agent_file_of_another_layout(run: Path, sentinel: Path) -> list[str]:
    """A readable agent file whose network tensors are named as another version would (one
    renamed): refused in one line, not a torch traceback."""
    from safetensors.torch import load, save

    path = run / "agent.safetensors"
    payload = path.read_bytes()
    size = int.from_bytes(payload[:8], "little")
    metadata = json.loads(payload[8 : 8 + size])["__metadata__"]
    tensors = load(payload)
    name = sorted(tensors)[0]
    tensors[name.replace(".", ".old_", 1)] = tensors.pop(name)
    path.write_bytes(save(tensors, metadata=metadata))
    return ["eval", path]


CASES = {
    "pickle payload in a checkpoint": (_pickled_checkpoint, "not a readable rlkit checkpoint"),
    "pickle payload as agent file": (_pickled_agent_file, "not a readable rlkit file"),
    "YAML python tag in a config": (_yaml_config, "invalid YAML"),
    "YAML python tag in a run's config": (_yaml_run_config, "invalid YAML"),
    "truncated checkpoint": (_truncated_checkpoint, "the manifest says"),
    "flipped bytes": (_flipped_bytes, "checksum mismatch"),
    "header claiming a huge size": (_huge_header, "not a readable rlkit checkpoint"),
    "agent file with a huge header": (_huge_header_agent_file, "not a readable rlkit file"),
    "manifest naming another file": (_manifest_points_elsewhere, "does not match its file"),
    "state naming missing tensors": (_dangling_tensor_reference, "does not fit"),
    "agent file of another layout": (_agent_file_of_another_layout, "does not fit this rlkit"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_file_gives_a_clear_error_and_runs_nothing(tmp_path, run_dir, case):
    make, fragment = CASES[case]
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    sentinel = tmp_path / "sentinel"
    args = make(run, sentinel)
    if args[0] == "train":
        args.append("--no-progress")
    result = subprocess.run(
        [sys.executable, "-m", "rlkit.cli", *map(str, args)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert fragment in lines[0], lines[0]
    assert not sentinel.exists()
