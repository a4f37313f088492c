"""`python -m rlkit.cli ...`: the same as the `rlkit` command."""

import sys

from rlkit.cli import main

sys.exit(main())
