"""Writing files so that a crash never leaves half of one (no torch here: the parent process of
`rlkit train --seeds` uses it before any child starts)."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temporary file's name is chosen before the file exists, so that any exception,
    # Ctrl-C included, removes it. (With tempfile.mkstemp, a Ctrl-C landing after it created
    # the file and before it returned the name left the file behind: it happened in CI, once.)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
        try:
            # O_EXCL: never another writer's file; the umask applies as to a plain open().
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
            break
        except FileExistsError:
            continue  # a name another writer holds (1 in 2^64): not ours to remove
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    # Make the rename itself durable.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
