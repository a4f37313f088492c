"""The documentation (docs/, README.md): it builds with warnings as errors, every name its API
reference shows imports, and every command and Python snippet on its pages runs.

The snippets run as a reader would run them, page by page in a fresh folder holding the
configs: `rlkit` commands through the CLI's own `main` (in this process: starting a Python for
each of some fifty commands would cost minutes; the CLI as a separate process is
tests/test_cli.py's), Python blocks in a fresh namespace, a block captioned with a file name
(`my_envs.py`) written to that file first. Training budgets are capped (`--steps`, one seed of
`--seeds`, one trial of `rlkit tune`, `learn` at CAP steps), since the claim here is that the
commands run as written; what they learn is tests/test_learning.py's. Commands that start a
server or install something are checked, not run: `make` targets with `make -n`, a benchmark
script's options against its argparse calls, extras against pyproject.toml.
"""

from __future__ import annotations

import ast
import contextlib
import glob
import importlib
import re
import shlex
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomllib
import torch
import yaml

MarkdownIt = pytest.importorskip("markdown_it", reason="the docs extra").MarkdownIt

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)
CAP = 300  # env steps per training run in a snippet
BIN = Path(sys.executable).parent
# Appended to a command: argparse keeps the last value of an option.
CAPS = {
    "train": ["--steps", str(CAP), "--set", "eval_episodes=2", "--no-progress",
              "--set", f"checkpoint_interval={CAP // 2}"],
    "tune": ["--trials", "1", "--seeds-per-trial", "1", "--steps", str(CAP), "--jobs", "1",
             "--set", f"eval_interval={CAP // 2}", "--set", "eval_episodes=2"],
}  # fmt: skip


@dataclass
class Block:
    page: Path
    line: int
    kind: str  # bash, python, yaml, file, other
    text: str
    name: str = ""  # a file block's file name

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path, text: str | None = None) -> list[Block]:
    """The code blocks of a page (of `text` given as the page's)."""
    found = []
    source = page.read_text() if text is None else text
    for token in MarkdownIt("commonmark").parse(source):
        if token.type != "fence":
            continue
        info, text, line = token.info.strip(), token.content, token.map[0] + 1
        if info == "{code-block} python":
            caption = re.search(r"^:caption: (\S+\.py)\n", text, re.M)
            body = re.sub(r"^:\w+:.*\n", "", text, flags=re.M)
            if caption:
                found.append(Block(page, line, "file", body, caption.group(1)))
            else:
                found.append(Block(page, line, "python", body))
        elif info in ("bash", "python", "yaml"):
            found.append(Block(page, line, info, text))
    return found


def commands(text: str) -> list[str]:
    """The commands of a bash block: continuation lines joined, comments dropped."""
    joined = text.replace("\\\n", " ")
    lines = [line.split(" #")[0].strip() for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def check_benchmark_options(args: list[str], block: Block) -> None:
    """A benchmark command names a script that exists and options its argparse defines."""
    script = ROOT / args[1]
    assert script.is_file(), f"{block}: no {args[1]}"
    defined = {
        node.args[0].value
        for node in ast.walk(ast.parse(script.read_text()))
        if isinstance(node, ast.Call)
        and getattr(node.func, "attr", "") == "add_argument"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }
    used = {a.split("=")[0] for a in args[2:] if a.startswith("--")}
    assert used <= defined, f"{block}: {args[1]} has no option {sorted(used - defined)}"


def run_cli(args: list[str], block: Block, capfd: pytest.CaptureFixture) -> None:
    from rlkit.cli import main

    capfd.readouterr()
    code = main(args)
    _, err = capfd.readouterr()
    assert code == 0, f"{block}: rlkit {shlex.join(args)} exited {code}\n{err[-3000:]}"


def run_command(command: str, block: Block, capfd: pytest.CaptureFixture) -> None:
    # Split as a shell does, globs expanded (`rlkit eval runs/ppo_s2_*/`).
    args = [m for a in shlex.split(command) for m in (sorted(glob.glob(a)) or [a])]
    head = args[0].removeprefix(".venv/bin/")
    if head == "rlkit":
        sub = args[1] if len(args) > 1 else ""
        resuming = "--resume" in args or "--report" in args
        capped = args[1:] + ([] if resuming else CAPS.get(sub, []))
        if sub == "train" and "--seeds" in args and not resuming:
            capped += ["--seeds", args[args.index("--seeds") + 1].split("-")[0].split(",")[0]]
        run_cli(capped, block, capfd)
    elif head == "python" and len(args) > 1 and args[1].startswith("benchmarks/"):
        check_benchmark_options(args, block)
    elif head == "make":
        targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M)
        for target in [a for a in args[1:] if "=" not in a]:
            assert target in targets, f"{block}: no make target {target}"
        result = subprocess.run(["make", "-n", *args[1:]], cwd=ROOT, capture_output=True)
        assert result.returncode == 0, f"{block}: make -n {args[1:]}: {result.stderr[-2000:]}"
    elif head == "tensorboard":
        assert (BIN / "tensorboard").is_file(), f"{block}: tensorboard is not installed"
    elif head == "pip":
        extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
            "optional-dependencies"
        ]
        for spec in re.findall(r"rlkit\[([\w,]+)\]", command):
            assert set(spec.split(",")) <= set(extras), f"{block}: unknown extra in {spec}"
    elif head in ("source", "apt-get"):
        pass  # the environment's, not rlkit's
    else:
        pytest.fail(f"{block}: no rule for running {command!r} (add one to tests/test_docs.py)")


def run_python(block: Block) -> None:
    try:
        exec(compile(block.text, str(block), "exec"), {"__name__": "__docs__"})
    except Exception as error:
        raise AssertionError(f"{block}: {type(error).__name__}: {error}") from error


def run_page(page: Path, work: Path, capfd: pytest.CaptureFixture, text: str | None = None):
    ran = 0
    for block in blocks(page, text):
        if block.kind == "bash":
            for command in commands(block.text):
                run_command(command, block, capfd)
                ran += 1
        elif block.kind == "file":
            (work / block.name).write_text(block.text)
        elif block.kind == "python":
            run_python(block)
            ran += 1
        elif block.kind == "yaml":
            data = yaml.safe_load(block.text)
            if isinstance(data, dict) and "agent" in data:
                from rlkit.experiments.run_config import load_run_config

                path = work / "docs_config.yaml"
                path.write_text(block.text)
                load_run_config(path)
            elif isinstance(data, dict) and "search" in data:
                from rlkit.experiments.search import SearchSpace

                SearchSpace.parse(data["search"])
    return ran


@contextlib.contextmanager
def in_workspace(work: Path, monkeypatch: pytest.MonkeyPatch):
    """The page's folder as the current one, `learn` capped, and what the CLI changes for its
    process (torch's threads, the warning format, imported env modules) put back after."""
    import rlkit.agent.core

    learn = rlkit.agent.core.Agent.learn

    def capped(self, total_steps=None, *args, **kwargs):
        if type(total_steps) is int:
            total_steps = min(total_steps, CAP)
        return learn(self, total_steps, *args, **kwargs)

    monkeypatch.setattr(rlkit.agent.core.Agent, "learn", capped)
    monkeypatch.chdir(work)
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)
    monkeypatch.setattr(sys, "path", list(sys.path))
    threads, modules = torch.get_num_threads(), set(sys.modules)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        for name in set(sys.modules) - modules:
            if name.split(".")[0] in {p.stem for p in work.glob("*.py")}:
                del sys.modules[name]


def workspace(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(ROOT / "configs", work / "configs")
    return work


@pytest.mark.parametrize(
    "page", [ROOT / "README.md", *PAGES], ids=lambda p: str(p.relative_to(ROOT))
)
def test_the_commands_and_snippets_of_a_page_run(page, tmp_path, monkeypatch, capfd):
    work = workspace(tmp_path)
    with in_workspace(work, monkeypatch):
        run_page(page, work, capfd)


def test_the_docs_build_with_warnings_as_errors(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(DOCS), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-5000:]
    assert (tmp_path / "html" / "guide" / "configs.html").is_file()


def test_the_config_reference_lists_every_key_with_its_docstring(tmp_path):
    """Every field of every agent config (nested ones dotted) has a description, which the
    reference shows."""
    sys.path.insert(0, str(DOCS / "_ext"))
    from rlkit_docs import config_rows

    import agents

    for name, cls in agents.AGENTS.items():
        rows = config_rows(cls.Config)
        missing = [key for key, _, _, doc in rows if not doc]
        assert not missing, f"{name}: config keys without a docstring: {missing}"
        keys = {key for key, *_ in rows}
        assert {"env", "seed", "optimizer.lr", "network.hidden_sizes"} <= keys


def api_names() -> list[str]:
    text = (DOCS / "api.md").read_text()
    return re.findall(r"^\.\. auto(?:class|function|module|data)::\s+(\S+)", text, re.M)


@pytest.mark.parametrize("name", api_names())
def test_every_name_in_the_api_reference_imports(name):
    parts = name.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            target = getattr(target, attribute)
        return
    pytest.fail(f"{name} does not import")


@pytest.mark.parametrize(
    "text, error",
    [
        ("```bash\nrlkit train configs/ppo_cartpole.yaml --set optimizer.lrr=1\n```", "lrr"),
        ("```bash\npython benchmarks/learning.py configs/x.yaml --seedz 1\n```", "--seedz"),
        ("```python\nimport agents\nagents.DQN(env='CartPole-v1').lern(10)\n```", "lern"),
    ],
)
def test_the_snippet_runner_fails_on_a_wrong_snippet(text, error, tmp_path, monkeypatch, capfd):
    """The page test can fail: a misspelled key, option or method is reported."""
    work = workspace(tmp_path)
    with in_workspace(work, monkeypatch), pytest.raises(AssertionError, match=error):
        run_page(DOCS / "wrong.md", work, capfd, text)
