"""PLINTH_HOME is private whatever the umask; code versions are extracted once and
shared read-only by hard links (plinth.config.secure_home, plinth.services.workdirs)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from plinth.artifacts.archive import ArchiveLimits
from plinth.config import secure_home
from plinth.services.workdirs import prepare_code, shared_code_dir


def test_an_existing_world_readable_home_is_narrowed_and_new_files_are_private(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    os.chmod(home, 0o755)
    old = os.umask(0o022)
    try:
        secure_home(home)
        assert (home.stat().st_mode & 0o777) == 0o700
        (home / "new.db").write_text("x")
        assert not (home / "new.db").stat().st_mode & 0o077
    finally:
        os.umask(old)


def _upload(home: Path, files: dict[str, bytes]) -> str:
    import hashlib

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name.endswith(".sh") else 0o600
            tar.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    path = home / "files" / sha[:2] / f"{sha}.tar.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    return sha


def test_one_extraction_per_code_version_linked_into_each_workdir(tmp_path: Path) -> None:
    home = tmp_path / "home"
    sha = _upload(home, {"train.py": b"print(1)", "run.sh": b"#!/bin/sh\n", "d/x": b"x"})
    code = {"kind": "file", "sha256": sha}
    limits = ArchiveLimits(max_packed_bytes=2**20, max_unpacked_bytes=2**20, max_files=10)
    a = prepare_code(home, "wa", code, limits)
    b = prepare_code(home, "wb", code, limits)
    assert a != b and (a / "train.py").read_text() == "print(1)"
    shared = shared_code_dir(home, code)
    assert os.path.samefile(shared / "train.py", b / "train.py")
    assert (os.stat(shared / "train.py").st_mode & 0o777) == 0o444
    assert (os.stat(shared / "run.sh").st_mode & 0o777) == 0o555
    (a / "d" / "new").write_text("mine")  # the workload's directories are its own
    assert not (b / "d" / "new").exists() and not (shared / "d" / "new").exists()
    assert prepare_code(home, "wa", code, limits) == a  # a retry reuses it
    assert (a.stat().st_mode & 0o777) == 0o700


def test_os_user_names_are_valid_unique_and_short() -> None:
    from plinth.services.isolation import os_user_name

    assert os_user_name("plinth-", 3, "Ads Team") == "plinth-3-ads-team"
    long = os_user_name("plinth-", 12345, "a" * 80)
    assert len(long) <= 32 and long.startswith("plinth-12345-")
    assert os_user_name("plinth-", 1, "x") != os_user_name("plinth-", 2, "x")
