"""Sphinx configuration of rlkit's documentation (`make docs`; the sources are Markdown, read
by MyST). Built with warnings as errors: a broken cross-reference or a page outside the table
of contents fails the build."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

project = "rlkit"
author = "the rlkit developers"
copyright = "2026, the rlkit developers"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "rlkit_docs",
]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# Every cross-reference must resolve; the names below are outside rlkit (no intersphinx: the
# build fetches nothing).
nitpicky = True
nitpick_ignore_regex = [
    (
        r"py:.*",
        r"(torch|np|numpy|gym|gymnasium|optuna|tqdm|argparse|collections|typing|"
        r"pathlib|contextlib|dataclasses)\..*",
    ),
    (
        r"py:class",
        r"(Any|Path|Callable|Mapping|Sequence|Iterator|Iterable|ClassVar|NamedTuple|"
        r"ParamsT|Tensor|TextIO|Module|_ArrayLike.*)",
    ),
]

# Docstrings write `code` in single backticks, as Markdown does.
default_role = "code"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_default_options = {"members": True, "undoc-members": False}
autodoc_class_signature = "separated"
add_module_names = False

html_theme = "furo"
html_title = "rlkit"
html_static_path = ["_static"]
html_theme_options = {"source_repository": "", "navigation_with_keys": True}
