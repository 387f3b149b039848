"""Packing, validating and extracting code uploads, including hostile archives.

Every malicious archive is built here, in memory, with tarfile (and, for the gzip
bomb, a streaming deflate trick), so the tests need no fixtures on disk.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
import zlib
from pathlib import Path

import pytest

from plinth.artifacts.archive import (
    ArchiveInfo,
    ArchiveLimits,
    ArchiveTooLargeError,
    UnsafeArchiveError,
    extract_archive,
    pack_directory,
    validate_archive,
)

LIMITS = ArchiveLimits()
MiB = 1024 * 1024


def make_tar(
    *members: tuple[tarfile.TarInfo, bytes | None], fmt: int = tarfile.PAX_FORMAT
) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def entry(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return sorted(m.name for m in tar.getmembers())


# -- pack --------------------------------------------------------------------------


def test_pack_honours_gitignore_at_every_depth_and_skips_git(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            ".gitignore": "*.log\n!keep.log\nbuild/\n/data\n",
            "train.py": "print(1)",
            "debug.log": "noise",
            "keep.log": "kept by negation",
            "build/out.o": "binary",
            "data/big.csv": "rows",
            "src/data/small.csv": "not the root /data",
            "src/.gitignore": "*.tmp\n",
            "src/a.tmp": "ignored by the nested file",
            "src/b.py": "x",
            ".git/HEAD": "ref: refs/heads/main",
            "sub/.git": "gitdir: elsewhere (a submodule)",
        },
    )
    assert names(pack_directory(tmp_path)) == [
        ".gitignore",
        "keep.log",
        "src",
        "src/.gitignore",
        "src/b.py",
        "src/data",
        "src/data/small.csv",
        "sub",
        "train.py",
    ]


def test_pack_is_deterministic_and_round_trips(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src, {"a.py": "print('a')", "pkg/b.py": "B = 1"})
    (src / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (src / "run.sh").chmod(0o755)
    (src / "pkg" / "link.py").symlink_to("b.py")
    first = pack_directory(src)
    assert pack_directory(src) == first  # same tree, same bytes, same content address
    info = validate_archive(first, LIMITS)
    assert isinstance(info, ArchiveInfo)
    assert info.packed_bytes == len(first) and info.files == 5
    assert info.unpacked_bytes == len("print('a')") + len("B = 1") + len("#!/bin/sh\necho hi\n")

    dest = tmp_path / "out"
    extract_archive(first, dest, LIMITS)
    assert (dest / "pkg" / "b.py").read_text() == "B = 1"
    assert os.readlink(dest / "pkg" / "link.py") == "b.py"
    assert (dest / "run.sh").stat().st_mode & stat.S_IXUSR


def test_pack_rewrites_absolute_links_inside_the_tree(tmp_path: Path) -> None:
    write_tree(tmp_path, {"conf/real.yaml": "a: 1"})
    (tmp_path / "conf" / "abs.yaml").symlink_to(tmp_path / "conf" / "real.yaml")
    data = pack_directory(tmp_path)
    validate_archive(data, LIMITS)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        assert tar.getmember("conf/abs.yaml").linkname == "real.yaml"


def test_pack_refuses_a_link_leaving_the_tree(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "secrets").symlink_to("/etc")
    with pytest.raises(UnsafeArchiveError, match=r"'secrets' points outside.*\.gitignore"):
        pack_directory(src)
    (src / ".gitignore").write_text("secrets\n")
    assert names(pack_directory(src)) == [".gitignore"]


def test_pack_enforces_caps(tmp_path: Path) -> None:
    write_tree(tmp_path, {f"f{i}.txt": "x" * 100 for i in range(5)})
    with pytest.raises(UnsafeArchiveError, match="more than 3 members"):
        pack_directory(tmp_path, ArchiveLimits(max_files=3))
    with pytest.raises(UnsafeArchiveError, match="unpacks to more than 250 bytes"):
        pack_directory(tmp_path, ArchiveLimits(max_unpacked_bytes=250))
    (tmp_path / "noise.bin").write_bytes(os.urandom(4096))
    with pytest.raises(ArchiveTooLargeError, match="over the cap of 1000 bytes"):
        pack_directory(tmp_path, ArchiveLimits(max_packed_bytes=1000))


def test_pack_needs_a_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a directory"):
        pack_directory(tmp_path / "missing")


# -- validate: hostile archives ---------------------------------------------------------


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([file("/etc/cron.d/x")], r"member '/etc/cron.d/x' has an absolute path"),
        ([file("a/../../escape.py")], r"member 'a/../../escape.py' has a '..' component"),
        ([file("../escape.py")], r"'..' component"),
        ([entry("ln", tarfile.SYMTYPE, "/etc/passwd")], r"'ln' points to the absolute path"),
        ([entry("a/ln", tarfile.SYMTYPE, "../../x")], r"'a/ln' -> '../../x' points outside"),
        (
            [entry("d", tarfile.SYMTYPE, "."), entry("p", tarfile.SYMTYPE, "d/../..")],
            r"'p' -> 'd/../..' points outside",
        ),
        (
            # Lexically inside ('d/..' is '.'), really '..' once d -> 'sub/..' ... -> '..'
            [entry("sub", tarfile.DIRTYPE), entry("sub/up", tarfile.SYMTYPE, ".."),
             entry("d", tarfile.SYMTYPE, "sub/up"), entry("p", tarfile.SYMTYPE, "d/..")],
            r"'p' -> 'd/\.\.' leads outside the archive through other links",
        ),
        ([file("a"), entry("h", tarfile.LNKTYPE, "/etc/passwd")], r"hard link 'h' -> '/etc/passwd'"),
        ([entry("h", tarfile.LNKTYPE, "../outside")], r"hard link 'h' -> '../outside'"),
        ([entry("h", tarfile.LNKTYPE, "not-a-member")], r"does not point to an earlier file"),
        ([entry("d", tarfile.DIRTYPE), entry("h", tarfile.LNKTYPE, "d")], r"earlier file"),
        ([file("a"), entry("a", tarfile.LNKTYPE, "a")], r"hard link 'a' -> 'a'"),
        ([entry(".", tarfile.LNKTYPE, ".")], r"hard link '\.' -> '\.'"),
        ([file("./")], r"names the archive's root but is not a directory"),
        ([entry("a", tarfile.DIRTYPE), file("a")], r"'a' appears twice, as a dir and as a file"),
        ([file("a"), file("a/b")], r"'a/b' is inside 'a', which is a file"),
        ([file("a/b"), file("a")], r"'a' appears twice, as a dir and as a file"),
        ([entry("l", tarfile.SYMTYPE, "d"), file("l/x")], r"inside 'l', which is a symbolic"),
        ([file("a/./b")], r"'a/./b' has an empty or '.' component"),
        ([file("a//b")], r"empty or '.' component"),
        ([entry("dev", tarfile.CHRTYPE)], r"member 'dev' is a character device"),
        ([entry("disk", tarfile.BLKTYPE)], r"member 'disk' is a block device"),
        ([entry("pipe", tarfile.FIFOTYPE)], r"member 'pipe' is a fifo"),
    ],
)  # fmt: skip
def test_refuses_hostile_members(members: list, message: str) -> None:
    data = make_tar(*members)
    with pytest.raises(UnsafeArchiveError, match=message) as err:
        validate_archive(data, LIMITS)
    assert err.value.member  # the offending member is named


def test_accepts_links_that_stay_inside() -> None:
    data = make_tar(
        file("pkg/real.py"),
        entry("pkg/same.py", tarfile.SYMTYPE, "real.py"),
        entry("top.py", tarfile.SYMTYPE, "pkg/../pkg/real.py"),
        entry("hard.py", tarfile.LNKTYPE, "pkg/real.py"),
        entry("dir", tarfile.SYMTYPE, "pkg"),
    )
    assert validate_archive(data, LIMITS).files == 5


def test_refuses_what_is_not_a_gzip_tar() -> None:
    with pytest.raises(UnsafeArchiveError, match=r"not a gzip-compressed tar archive"):
        validate_archive(b"PK\x03\x04 a zip file", LIMITS)
    with pytest.raises(UnsafeArchiveError, match=r"not a valid \.tar\.gz"):
        validate_archive(gzip.compress(b"just some text, not a tar" * 50), LIMITS)
    truncated = make_tar(file("a.py", os.urandom(20000)))[:-100]
    with pytest.raises(UnsafeArchiveError, match=r"not a valid \.tar\.gz"):
        validate_archive(truncated, LIMITS)


def test_packed_size_cap_is_its_own_error() -> None:
    data = make_tar(file("a.bin", os.urandom(5000)))
    with pytest.raises(ArchiveTooLargeError, match=r"over the cap of 1000 bytes"):
        validate_archive(data, ArchiveLimits(max_packed_bytes=1000))


def test_file_count_and_unpacked_size_caps() -> None:
    many = make_tar(*(file(f"f{i}") for i in range(11)))
    with pytest.raises(UnsafeArchiveError, match=r"more than 10 members \(at 'f10'\)"):
        validate_archive(many, ArchiveLimits(max_files=10))
    big = make_tar(file("a", b"x" * 600), file("b", b"y" * 600))
    with pytest.raises(UnsafeArchiveError, match=r"unpacks to more than 1000 bytes \(at 'b'\)"):
        validate_archive(big, ArchiveLimits(max_unpacked_bytes=1000))


def gzip_bomb(prefix: bytes, zeros: int) -> bytes:
    """A real, valid gzip file of ``prefix`` then ``zeros`` zero bytes (a whole number
    of MiB), made cheaply: one MiB of zeros is deflated once and its blocks repeated,
    which is valid because each copy refers back only inside itself."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = comp.compress(prefix) + comp.flush(zlib.Z_FULL_FLUSH)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    zero_block = comp.compress(bytes(MiB)) + comp.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(prefix)
    zero = bytes(MiB)
    for _ in range(zeros // MiB):
        crc = zlib.crc32(zero, crc)
    final = b"\x03\x00"  # an empty final block (fixed Huffman, BFINAL=1)
    size = (len(prefix) + zeros) & 0xFFFFFFFF
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = crc.to_bytes(4, "little") + size.to_bytes(4, "little")
    return header + head + zero_block * (zeros // MiB) + final + trailer


def test_the_bomb_builder_makes_a_valid_gzip() -> None:
    small = gzip_bomb(b"abc", 3 * MiB)
    assert gzip.decompress(small) == b"abc" + bytes(3 * MiB)


def test_gzip_bomb_declared_as_a_2_gib_member_is_refused_at_its_header() -> None:
    info = tarfile.TarInfo("zeros.bin")
    info.size = 2 * 1024 * MiB
    header = info.tobuf(tarfile.PAX_FORMAT)
    bomb = gzip_bomb(header, 2 * 1024 * MiB)
    assert len(bomb) < 4 * MiB  # 2 GiB of zeros, a few MB packed
    with pytest.raises(
        UnsafeArchiveError, match=r"unpacks to more than .* \(at 'zeros.bin'\)"
    ) as err:
        validate_archive(bomb, LIMITS)
    assert err.value.decompressed_bytes < 2 * MiB  # stopped without inflating it


def test_gzip_bomb_of_zeros_after_a_valid_tar_is_refused() -> None:
    # Zero blocks are a valid end-of-archive marker: the declared sizes are tiny,
    # only the bytes really decompressed give it away.
    small_tar = gzip.decompress(make_tar(file("train.py", b"print(1)")))
    bomb = gzip_bomb(small_tar, 2 * 1024 * MiB)
    with pytest.raises(UnsafeArchiveError, match=r"large amount of data after its end") as err:
        validate_archive(bomb, LIMITS)
    assert err.value.decompressed_bytes < 4 * MiB


def test_oversized_pax_header_is_refused_before_it_is_read_into_memory() -> None:
    info = tarfile.TarInfo("a.py")
    info.pax_headers = {"comment": "z" * (8 * MiB)}
    data = make_tar((info, b""))
    with pytest.raises(UnsafeArchiveError, match=r"oversized .*pax or long-name header") as err:
        validate_archive(data, LIMITS)
    assert err.value.decompressed_bytes < 3 * MiB


def test_gnu_long_name_bomb_is_refused() -> None:
    info = tarfile.TarInfo("n" * (4 * MiB))
    data = make_tar((info, b""), fmt=tarfile.GNU_FORMAT)
    with pytest.raises(UnsafeArchiveError, match=r"oversized"):
        validate_archive(data, LIMITS)


# -- extract --------------------------------------------------------------------------


def test_extract_refuses_without_writing_anything(tmp_path: Path) -> None:
    data = make_tar(file("good.py"), file("../evil.py"))
    dest = tmp_path / "code"
    with pytest.raises(UnsafeArchiveError, match=r"'\.\./evil\.py'"):
        extract_archive(data, dest, LIMITS)
    assert list(tmp_path.iterdir()) == []  # no dest, no temp dir, nothing beside


def test_extract_into_an_empty_directory_and_not_over_files(tmp_path: Path) -> None:
    data = make_tar(file("a.py", b"A"))
    dest = tmp_path / "code"
    dest.mkdir()
    extract_archive(data, dest, LIMITS)
    assert (dest / "a.py").read_bytes() == b"A"
    with pytest.raises(FileExistsError, match="not an empty directory"):
        extract_archive(data, dest, LIMITS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["code"]


def test_extract_strips_dangerous_mode_bits(tmp_path: Path) -> None:
    info, payload = file("tool", b"#!/bin/sh\n")
    info.mode = 0o6777  # setuid, setgid, world-writable
    dest = tmp_path / "code"
    extract_archive(make_tar((info, payload)), dest, LIMITS)
    mode = (dest / "tool").stat().st_mode
    assert not mode & (stat.S_ISUID | stat.S_ISGID | stat.S_IWOTH)
    assert mode & stat.S_IXUSR


def test_refuses_names_too_long_for_a_file_system() -> None:
    with pytest.raises(UnsafeArchiveError, match=r"name longer than 255 bytes"):
        validate_archive(make_tar(file("d/" + "n" * 300)), LIMITS)
    deep = "/".join(["abcdefgh"] * 600)  # 5.4 KB path
    with pytest.raises(UnsafeArchiveError, match=r"path longer than 4096 bytes"):
        validate_archive(make_tar(file(deep)), LIMITS)


def test_refuses_link_loops() -> None:
    data = make_tar(entry("a", tarfile.SYMTYPE, "b"), entry("b", tarfile.SYMTYPE, "a/x"))
    with pytest.raises(UnsafeArchiveError, match=r"\(or loops\)"):
        validate_archive(data, LIMITS)


def test_many_fat_headers_hit_the_total_decompressed_cap() -> None:
    # Each pax header stays under the per-header budget, but together they would
    # make the validator decompress far more than the caps allow.
    fat = []
    for i in range(40):
        info = tarfile.TarInfo(f"f{i}")
        info.pax_headers = {"comment": "z" * (512 * 1024)}
        fat.append((info, b""))
    limits = ArchiveLimits(max_unpacked_bytes=1 * MiB, max_files=100)
    with pytest.raises(UnsafeArchiveError, match=r"decompresses to more than \d+ bytes") as err:
        validate_archive(make_tar(*fat), limits)
    hard_cap = 1 * MiB + 101 * 4096 + 1 * MiB
    assert err.value.decompressed_bytes <= hard_cap


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"max_files must be a positive integer"):
        ArchiveLimits(max_files=0)
