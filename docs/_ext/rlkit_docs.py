"""Sphinx extension of rlkit's docs: the config reference, generated from the config dataclasses
and the docstring under each field (rlkit.base.config.field_docs), so that it cannot drift from
the code.

    ```{rlkit-config} dqn
    ```

writes a list of every key of agents.DQNConfig (`run` writes the run settings of a config
file): the key as YAML and `--set` spell it (nested configs dotted: `network.hidden_sizes`), its
type, its default and its description.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList


def type_name(hint: Any) -> str:
    """`int`, `float | None`, `list[int]`, `dict[str, Any]` for an annotation."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(arg) for arg in typing.get_args(hint))
    if origin is not None:
        args = ", ".join(type_name(arg) for arg in typing.get_args(hint))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if hint is type(None):
        return "None"
    return getattr(hint, "__name__", str(hint).replace("typing.", ""))


def yaml_value(value: Any) -> str:
    """A default as it is written in a YAML config."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, float):
        return f"{value:g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.1e}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {yaml_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def config_rows(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, description) of every field, nested configs flattened."""
    from rlkit.base.config import Config, field_docs

    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    instance = cls()
    rows = []
    for field in dataclasses.fields(cls):
        key = prefix + field.name
        value = getattr(instance, field.name)
        if isinstance(value, Config):
            rows.append((key, type(value).__name__, "", docs.get(field.name, "")))
            rows += config_rows(type(value), key + ".")
            continue
        rows.append(
            (key, type_name(hints[field.name]), yaml_value(value), docs.get(field.name, ""))
        )
    return rows


def markdown_list(rows: list[tuple[str, str, str, str]]) -> list[str]:
    """A definition list: `key` · type · default, then the description (a table of four
    columns does not fit a page's width)."""

    def plain(text: str) -> str:
        return " ".join(text.split())

    lines = []
    for key, kind, default, doc in rows:
        term = f"`{key}` · {plain(kind)}" + (f" · default `{plain(default)}`" if default else "")
        lines += [term, f": {plain(doc)}", ""]
    return lines


class ConfigReference(Directive):
    required_arguments = 1

    def run(self):
        import agents
        from rlkit.experiments.run_config import RunConfig

        name = self.arguments[0]
        cls = RunConfig if name == "run" else agents.agent_class(name).Config
        lines = markdown_list(config_rows(cls))
        container = StringList(lines, source=f"config reference of {cls.__name__}")
        node = nodes.container(classes=["rlkit-config"])
        self.state.nested_parse(container, self.content_offset, node)
        return [node]


def setup(app):
    app.add_directive("rlkit-config", ConfigReference)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
