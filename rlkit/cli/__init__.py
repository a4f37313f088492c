"""Command line: `rlkit train CONFIG ...` (also over many seeds), `rlkit eval PATH ...`,
`rlkit report DIR ...` and `rlkit tune CONFIG ...` (hyperparameter search).

A user's mistake (missing file, bad key, unknown env, ...) prints one line on stderr and exits
with code 2; a traceback means a bug in rlkit.
"""

from __future__ import annotations

import re
import sys
import warnings
from collections.abc import Sequence

from rlkit.base.errors import EXIT_INTERRUPTED, EXIT_OS_ERROR, EXIT_USER_ERROR, UserError
from rlkit.cli.evaluate import cmd_eval, cmd_report
from rlkit.cli.parser import build_parser
from rlkit.cli.train import cmd_train
from rlkit.cli.tune import cmd_tune


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    # gymnasium colours its warnings for a terminal and prefixes them "WARN: "; ours say so.
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(message)).removeprefix("WARN: ")
    return f"rlkit: warning: {text}\n"


def main(argv: Sequence[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning  # a notice, not a source listing
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            return cmd_train(args)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "tune":
            return cmd_tune(args)
        return cmd_eval(args)
    except UserError as error:
        print(f"rlkit {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as error:  # disk full, permissions: the machine's state, not a bug
        print(f"rlkit {args.command}: error: {error}", file=sys.stderr)
        return EXIT_OS_ERROR
    except KeyboardInterrupt:
        print("\nrlkit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
