"""Property test: whatever validation accepts extracts cleanly and stays inside dest.

Hypothesis builds archives from path pieces chosen to be hostile ('..', '/',
'.', empty components, links to each other and upwards, members inside links and
files); every archive is either refused by validation (UnsafeArchiveError, with
nothing written) or extracts without error, every resulting path inside the
destination and nothing written beside it. Derandomized: the same examples on
every run.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plinth.artifacts.archive import ArchiveLimits, UnsafeArchiveError, extract_archive

PIECES = st.sampled_from(["a", "b", "..", ".", "", "c.py"])
PATHS = st.lists(PIECES, min_size=1, max_size=4).map("/".join)
TARGETS = st.one_of(PATHS, PATHS.map(lambda p: "/" + p))
MEMBERS = st.lists(
    st.tuples(st.sampled_from(["file", "dir", "symlink", "hardlink"]), PATHS, TARGETS),
    min_size=1,
    max_size=6,
)


def _archive(members: list[tuple[str, str, str]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for kind, name, target in members:
            info = tarfile.TarInfo(name or ".")
            if kind == "file":
                info.size = 1
                tar.addfile(info, io.BytesIO(b"x"))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE}.get(
                kind, tarfile.LNKTYPE
            )
            info.linkname = target
            tar.addfile(info)
    return buf.getvalue()


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(MEMBERS)
def test_accepted_archives_never_reach_outside(members: list[tuple[str, str, str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dest = root / "dest"
        try:
            extract_archive(_archive(members), dest, ArchiveLimits())
        except UnsafeArchiveError:
            assert not dest.exists()  # refused: nothing left behind
        else:
            real_dest = os.path.realpath(dest)
            for dirpath, dirnames, filenames in os.walk(dest):
                for name in dirnames + filenames:
                    path = os.path.join(dirpath, name)
                    resolved = os.path.realpath(path)
                    assert resolved == real_dest or resolved.startswith(real_dest + os.sep), (
                        path,
                        resolved,
                    )
        assert sorted(p.name for p in root.iterdir()) in ([], ["dest"])
