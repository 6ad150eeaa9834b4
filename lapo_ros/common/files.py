"""Files that appear whole or not at all: write a temporary file beside, then rename.

The one atomic writer of the package (datasets, checkpoints, configs, logs, policy files).
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class TemporaryFileError(OSError):
    """No temporary file can be created beside the target (the cause says why)."""


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new temporary path beside ``path``; rename it over ``path`` if the block
    succeeds, remove it if the block fails.

    On an exception (or a kill) the target keeps its previous content (a kill -9 can leave
    a hidden ``.NAME.*`` file, never a partial NAME). The file gets the permissions of the
    file it replaces, or for a new file those a normal creation gives (0666 less the umask).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder, expected a file name")
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}{path.suffix}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as error:
        raise TemporaryFileError(f"{path}: cannot create a file in {path.parent}") from error
    try:
        if path.exists():
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
