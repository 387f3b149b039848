"""Write a directory beside its destination, then rename it into place.

Shared by :func:`plinth.artifacts.archive.extract_archive` and
:func:`plinth.artifacts.gitcode.checkout`: the destination appears complete or
not at all.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_directory(dest: Path) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``dest`` to fill; when the block ends
    without an error, rename it to ``dest`` (mode 0755).

    ``dest`` must not exist, or be an empty directory (``FileExistsError``
    otherwise, before anything is created); its parents are created. Nothing
    half-written is ever visible at ``dest``: the temporary directory is a hidden
    sibling (``.NAME.*.partial``), and ``os.rename`` puts it in place atomically.
    On any error -- in the block, or a concurrent attempt that filled ``dest``
    first, so that the rename fails (``OSError``) -- the temporary directory is
    removed and the error propagates; what the other attempt wrote stays.
    """
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(f"{dest} already exists and is not an empty directory")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        if dest.exists():
            dest.rmdir()  # empty, checked above (OSError if filled since)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
