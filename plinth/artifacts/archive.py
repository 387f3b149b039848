"""Code uploads: pack a directory into a tar.gz, validate one, extract one safely.

An upload is untrusted input. :func:`validate_archive` streams through it once,
decompressing as it goes and counting the bytes it really decompresses, and
refuses, naming the member and what to fix:

* data that is not a gzip-compressed tar;
* packed size over ``max_packed_bytes`` (:class:`ArchiveTooLargeError`, HTTP 413);
* absolute member paths, paths with a ``..`` component, and paths with empty or
  ``.`` components inside them (tarfile would not extract those where their
  normalised name says);
* symbolic links whose target leaves the archive's root (resolved through the
  archive's other links too), and hard links to anything but an earlier file;
* members inside a symbolic link or a file of the archive, members named like
  the root that are not directories, and a name used for two kinds of member
  (e.g. a file where earlier members made a directory) -- so that whatever is
  accepted also extracts cleanly (a property test holds it to that);
* devices, fifos and GNU sparse members;
* more than ``max_files`` members, or more than ``max_unpacked_bytes`` of file
  data -- checked on each header before its data is read, and against the bytes
  actually decompressed, so a gzip bomb is stopped as soon as a cap is crossed
  without inflating it (nothing is written to disk while validating);
* oversized tar metadata (pax / GNU long-name headers over 1 MiB), which the
  tar reader would otherwise hold in memory.

:func:`extract_archive` validates first, then extracts with tarfile's ``"data"``
filter as a second guard into a temporary directory beside ``dest`` and renames
it into place: ``dest`` appears complete or not at all.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import posixpath
import stat
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import pathspec

from plinth.artifacts._staging import staged_directory

__all__ = [
    "ArchiveInfo",
    "ArchiveLimits",
    "ArchiveTooLargeError",
    "UnsafeArchiveError",
    "extract_archive",
    "pack_directory",
    "validate_archive",
]

MiB = 1024 * 1024
GiB = 1024 * MiB
_BLOCK = tarfile.BLOCKSIZE  # 512
#: Decompressed bytes a tar reader may consume for one member's headers (its
#: 512-byte header plus any pax / GNU long-name records). Real ones are tiny.
_HEADER_BUDGET = 1 * MiB
#: Links are resolved through the archive's other links at most this deep (as the
#: kernel's 40-link limit).
_MAX_LINK_DEPTH = 40
#: Longest path and path component Linux file systems accept (bytes).
_MAX_PATH_BYTES = 4096
_MAX_NAME_BYTES = 255


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps for an uploaded archive: bytes as uploaded, bytes of file data once
    unpacked, and number of members (files, directories and links)."""

    max_packed_bytes: int = 100 * MiB
    max_unpacked_bytes: int = 1 * GiB
    max_files: int = 100_000

    def __post_init__(self) -> None:
        for field_name in ("max_packed_bytes", "max_unpacked_bytes", "max_files"):
            value = getattr(self, field_name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(
                    f"ArchiveLimits.{field_name} must be a positive integer, got {value!r}"
                )


@dataclass(frozen=True)
class ArchiveInfo:
    """What :func:`validate_archive` found: ``sha256`` (hex) and size of the packed
    data, total file bytes once unpacked, member count."""

    sha256: str
    packed_bytes: int
    unpacked_bytes: int
    files: int


class UnsafeArchiveError(ValueError):
    """The archive is refused; the message names the problem, the member and the fix.

    ``member`` is the offending member's name (``None`` for whole-archive problems),
    ``decompressed_bytes`` how much had been decompressed when reading stopped.
    """

    def __init__(self, message: str, member: str | None = None, decompressed_bytes: int = 0):
        super().__init__(message)
        self.member = member
        self.decompressed_bytes = decompressed_bytes


class ArchiveTooLargeError(UnsafeArchiveError):
    """The packed archive is over ``max_packed_bytes`` (HTTP 413)."""


# -- pack ------------------------------------------------------------------------------


class _IgnoreRules:
    """``.gitignore`` files of a tree, applied as git does: each file's patterns are
    relative to its directory, and a deeper file overrides a shallower one."""

    def __init__(self) -> None:
        self._specs: list[tuple[str, pathspec.PathSpec]] = []  # (dir relative to root, spec)

    def add(self, rel_dir: str, gitignore: Path) -> None:
        try:
            lines = gitignore.read_text(errors="replace").splitlines()
        except OSError:
            return
        self._specs.append((rel_dir, pathspec.GitIgnoreSpec.from_lines(lines)))

    def ignored(self, rel_path: str, is_dir: bool) -> bool:
        decision = False
        for base, spec in self._specs:
            if base:
                if not rel_path.startswith(base + "/"):
                    continue
                sub = rel_path[len(base) + 1 :]
            else:
                sub = rel_path
            # Last matching pattern wins, "!" patterns re-include (git's rule);
            # spelled out rather than check_file() to work on every pathspec>=0.12.
            candidate = sub + "/" if is_dir else sub
            for pattern in spec.patterns:
                if pattern.include is not None and pattern.match_file(candidate) is not None:
                    decision = pattern.include
        return decision


def pack_directory(root: Path, limits: ArchiveLimits | None = None) -> bytes:
    """The tree under ``root`` as tar.gz bytes, paths relative to ``root``.

    Honours ``.gitignore`` files (at any depth, gitwildmatch syntax) and skips
    ``.git``; sockets, fifos and devices are skipped. Symbolic links are kept as
    links when they stay inside ``root``; one that points outside raises
    :class:`UnsafeArchiveError` (the server would refuse it). The output is
    deterministic for a given tree (sorted, owner 0, gzip timestamp 0), so the same
    code uploads to the same content address. Raises :class:`ArchiveTooLargeError`
    / :class:`UnsafeArchiveError` when a cap of ``limits`` is exceeded.
    """
    limits = limits or ArchiveLimits()
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory: give the project directory to pack")
    root_real = os.path.realpath(root)
    rules = _IgnoreRules()
    buf = io.BytesIO()
    members = 0
    unpacked = 0
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = os.path.relpath(dirpath, root)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
            if ".gitignore" in filenames:
                rules.add(rel_dir, Path(dirpath, ".gitignore"))
            kept_dirs = []
            for name in sorted(dirnames):
                rel = f"{rel_dir}/{name}" if rel_dir else name
                full = os.path.join(dirpath, name)
                if name == ".git" or rules.ignored(rel, is_dir=True):
                    continue
                if os.path.islink(full):  # os.walk does not descend into links
                    filenames.append(name)
                    continue
                kept_dirs.append(name)
            dirnames[:] = kept_dirs
            if rel_dir:
                members += 1
                tar.add(dirpath, arcname=rel_dir, recursive=False, filter=_normalise)
            for name in sorted(filenames):
                rel = f"{rel_dir}/{name}" if rel_dir else name
                full = os.path.join(dirpath, name)
                if name == ".git" or rules.ignored(rel, is_dir=False):
                    continue
                st = os.lstat(full)
                link_target = None
                if stat.S_ISLNK(st.st_mode):
                    target = os.path.realpath(full)
                    if target != root_real and not target.startswith(root_real + os.sep):
                        raise UnsafeArchiveError(
                            f"symbolic link {rel!r} points outside the directory "
                            f"({os.readlink(full)!r}); replace it by the file it points "
                            "to or add it to .gitignore",
                            member=rel,
                        )
                    # Stored relative to the link's own directory, so that the
                    # server's lexical check sees it stays inside.
                    link_target = os.path.relpath(target, os.path.realpath(dirpath))
                elif not stat.S_ISREG(st.st_mode):
                    continue
                members += 1
                unpacked += st.st_size if stat.S_ISREG(st.st_mode) else 0
                _check_caps(limits, members, unpacked, rel)
                info = _normalise(tar.gettarinfo(full, arcname=rel))
                if link_target is not None:
                    info.linkname = link_target.replace(os.sep, "/")
                    tar.addfile(info)
                else:
                    with open(full, "rb") as f:
                        tar.addfile(info, f)
                if buf.tell() > limits.max_packed_bytes:
                    raise _packed_too_large(buf.tell(), limits)
    data = buf.getvalue()
    if len(data) > limits.max_packed_bytes:
        raise _packed_too_large(len(data), limits)
    return data


def _packed_too_large(size: int, limits: ArchiveLimits) -> ArchiveTooLargeError:
    return ArchiveTooLargeError(
        f"the packed directory is over the cap of {limits.max_packed_bytes} bytes "
        f"({size} bytes so far); add large files (data, checkpoints) to .gitignore and "
        "keep them in the file store instead"
    )


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # Owner names and ids of the packing machine mean nothing on the server.
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _check_caps(limits: ArchiveLimits, members: int, unpacked: int, name: str) -> None:
    if members > limits.max_files:
        raise UnsafeArchiveError(
            f"the archive has more than {limits.max_files} members (at {name!r}); "
            "add generated files to .gitignore or raise the upload file-count cap",
            member=name,
        )
    if unpacked > limits.max_unpacked_bytes:
        raise UnsafeArchiveError(
            f"the archive unpacks to more than {limits.max_unpacked_bytes} bytes (at "
            f"{name!r}); leave large files out (.gitignore) or raise the unpacked-size cap",
            member=name,
        )


# -- validate --------------------------------------------------------------------------


class _BombGuard(io.RawIOBase):
    """Decompresses a gzip stream for the tar reader, counting real output bytes,
    and refuses to hand out more than the budget the validator currently allows."""

    def __init__(self, data: bytes, hard_end: int, hard_message: str) -> None:
        self._gz = gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb")
        self.total = 0
        self.budget_end = 0  # self.total may not grow past this (moving budget)
        self.over_budget_message = ""
        self.hard_end = hard_end  # nor past this, ever
        self.hard_message = hard_message

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        want = len(b)
        if self.total >= self.hard_end and want > 0:
            raise UnsafeArchiveError(self.hard_message, decompressed_bytes=self.total)
        allowed = min(self.budget_end, self.hard_end) - self.total
        if allowed <= 0 and want > 0:
            raise UnsafeArchiveError(self.over_budget_message, decompressed_bytes=self.total)
        chunk = self._gz.read(min(want, allowed))
        n = len(chunk)
        b[:n] = chunk
        self.total += n
        return n


def validate_archive(data: bytes, limits: ArchiveLimits) -> ArchiveInfo:
    """Check an uploaded tar.gz without writing anything; see the module docstring.

    Returns an :class:`ArchiveInfo`; raises :class:`ArchiveTooLargeError` (packed
    size) or :class:`UnsafeArchiveError` (everything else), each saying what to fix.
    """
    if len(data) > limits.max_packed_bytes:
        raise ArchiveTooLargeError(
            f"the upload is {len(data)} bytes, over the cap of {limits.max_packed_bytes} "
            "bytes; leave large files out of the code (.gitignore) and keep them in the "
            "file store"
        )
    if data[:2] != b"\x1f\x8b":
        raise UnsafeArchiveError(
            "the upload is not a gzip-compressed tar archive (.tar.gz); pack the directory "
            "with `plinth` or `tar czf`"
        )
    # Whatever the headers claim, the whole stream may not decompress to more than
    # the file data cap plus generous room for headers (4 KiB per member).
    hard_cap = limits.max_unpacked_bytes + (limits.max_files + 1) * 4096 + _HEADER_BUDGET
    guard = _BombGuard(
        data,
        hard_cap,
        f"the archive decompresses to more than {hard_cap} bytes (file data plus tar "
        "headers); leave large files out or repack it with a standard tar",
    )
    members = 0
    unpacked = 0
    symlinks: dict[str, str] = {}  # normalised member name -> link target
    kinds: dict[str, str] = {}  # normalised member name -> file | dir | symlink | hardlink
    previous: tarfile.TarInfo | None = None

    def allow_next_header() -> None:
        # The reader may skip the previous member's data (padded to 512 bytes),
        # then read one header and its pax / long-name records.
        skip = 0 if previous is None else -(-previous.size // _BLOCK) * _BLOCK
        guard.budget_end = guard.total + skip + _HEADER_BUDGET
        guard.over_budget_message = (
            "the archive's tar metadata is oversized (a pax or long-name header over "
            f"{_HEADER_BUDGET} bytes) after member "
            f"{previous.name if previous else '(start)'!r}; repack it with a standard tar"
        )

    try:
        allow_next_header()
        # Stream mode: the tar reader pulls 10 KiB at a time through the guard
        # and skips member data by reading it, so every byte is counted.
        tar = tarfile.open(fileobj=guard, mode="r|")  # noqa: SIM115 - nothing to close
        while True:
            if previous is not None:
                allow_next_header()
            member = tar.next()
            if member is None:
                break
            members += 1
            name, kind = _check_member(member, kinds)
            if member.isreg():
                unpacked += member.size
            _check_caps(limits, members, unpacked, member.name)
            if member.issym():
                symlinks[name] = member.linkname
            kinds[name] = kind
            previous = member
        # Drain what follows the end-of-archive marker, within the caps: a valid
        # gzip ends with a checksum that we want verified.
        guard.budget_end = guard.total + 64 * 1024 + limits.max_unpacked_bytes // 1024
        guard.over_budget_message = (
            "the archive has a large amount of data after its end-of-archive marker; "
            "repack it with a standard tar"
        )
        while guard.read(64 * 1024):
            pass
    except UnsafeArchiveError as exc:
        exc.decompressed_bytes = guard.total
        raise
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise UnsafeArchiveError(
            f"the upload is not a valid .tar.gz ({exc}); pack the directory again",
            decompressed_bytes=guard.total,
        ) from None
    _check_symlink_targets(symlinks)
    return ArchiveInfo(
        sha256=hashlib.sha256(data).hexdigest(),
        packed_bytes=len(data),
        unpacked_bytes=unpacked,
        files=members,
    )


def _normalise_name(raw: str) -> tuple[str, list[str]]:
    """``raw`` without a leading ``./`` (``tar -C dir .`` writes one) or trailing
    ``/``, and its components; ``("", [])`` for the root itself."""
    parts = raw.split("/")
    while len(parts) > 1 and parts[0] == ".":
        parts.pop(0)
    while len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if parts in ([""], ["."]):
        return "", []
    return "/".join(parts), parts


def _has_odd_component(parts: list[str]) -> bool:
    # tarfile extracts names as written: "a/." or "a//b" would not go where the
    # normalised name says, so they are refused rather than normalised.
    return any(p in ("", ".") for p in parts)


def _check_member(member: tarfile.TarInfo, kinds: dict[str, str]) -> tuple[str, str]:
    """Refuse one member for its path, its type, or how it relates to the members
    before it (``kinds``); return its normalised name and kind."""
    raw = member.name
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise UnsafeArchiveError(
            f"member {raw!r} has an absolute path; pack paths relative to the project root",
            member=raw,
        )
    name, parts = _normalise_name(raw)
    if ".." in parts:
        raise UnsafeArchiveError(
            f"member {raw!r} has a '..' component; pack paths relative to the project root "
            "without '..'",
            member=raw,
        )
    if _has_odd_component(parts):
        raise UnsafeArchiveError(
            f"member {raw!r} has an empty or '.' component inside its path; pack plain "
            "relative paths such as 'src/train.py'",
            member=raw,
        )
    if "\x00" in raw:
        raise UnsafeArchiveError(f"member {raw!r} has a NUL byte in its name", member=raw)
    if len(name.encode(errors="surrogateescape")) > _MAX_PATH_BYTES or any(
        len(p.encode(errors="surrogateescape")) > _MAX_NAME_BYTES for p in parts
    ):
        raise UnsafeArchiveError(
            f"member {raw[:80]!r}... has a path longer than {_MAX_PATH_BYTES} bytes or a "
            f"name longer than {_MAX_NAME_BYTES} bytes; shorten it",
            member=raw,
        )
    if member.ischr() or member.isblk() or member.isfifo():
        kind = (
            "a character device"
            if member.ischr()
            else "a block device"
            if member.isblk()
            else "a fifo"
        )
        raise UnsafeArchiveError(
            f"member {raw!r} is {kind}; only files, directories and links inside the archive "
            "are allowed -- leave it out",
            member=raw,
        )
    if member.issparse():
        raise UnsafeArchiveError(
            f"member {raw!r} is a GNU sparse file; pack without --sparse", member=raw
        )
    if member.issym():
        target = member.linkname
        if target.startswith("/"):
            raise UnsafeArchiveError(
                f"symbolic link {raw!r} points to the absolute path {target!r}; links must stay "
                "inside the archive -- replace it by the file or a relative link",
                member=raw,
            )
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
        if resolved == ".." or resolved.startswith("../"):
            raise UnsafeArchiveError(
                f"symbolic link {raw!r} -> {target!r} points outside the archive; links must "
                "stay inside it -- replace it by the file it points to",
                member=raw,
            )
    elif member.islnk():
        target, target_parts = _normalise_name(member.linkname)
        if (
            member.linkname.startswith("/")
            or ".." in target_parts
            or _has_odd_component(target_parts)
            or kinds.get(target) not in ("file", "hardlink")
            or target == name
        ):
            raise UnsafeArchiveError(
                f"hard link {raw!r} -> {member.linkname!r} does not point to an earlier file "
                "of the archive; pack the file itself instead of a hard link",
                member=raw,
            )
    elif not (member.isreg() or member.isdir()):
        raise UnsafeArchiveError(
            f"member {raw!r} has an unsupported type {member.type!r}; only files, "
            "directories and links are allowed",
            member=raw,
        )
    kind = (
        "dir" if member.isdir() else "symlink" if member.issym() else
        "hardlink" if member.islnk() else "file"
    )  # fmt: skip
    if not name and kind != "dir":
        raise UnsafeArchiveError(
            f"member {raw!r} names the archive's root but is not a directory; give it a name",
            member=raw,
        )
    if kinds.get(name, kind) != kind:
        raise UnsafeArchiveError(
            f"member {raw!r} appears twice, as a {kinds[name]} and as a {kind} (a directory "
            "also when earlier members are inside it); keep one",
            member=raw,
        )
    for i in range(1, len(parts)):
        parent = "/".join(parts[:i])
        if kinds.get(parent) in ("file", "hardlink"):
            raise UnsafeArchiveError(
                f"member {raw!r} is inside {parent!r}, which is a file; rename one of them",
                member=raw,
            )
        if kinds.get(parent) == "symlink":
            # Writing through a link puts the file elsewhere than its name says
            # (or nowhere, when the link dangles); `tar` never packs that.
            raise UnsafeArchiveError(
                f"member {raw!r} is inside {parent!r}, which is a symbolic link; pack the "
                "files under their real directory",
                member=raw,
            )
        # Extraction creates missing parents as directories: so do we, here.
        kinds.setdefault(parent, "dir")
    return name, kind


def _check_symlink_targets(symlinks: dict[str, str]) -> None:
    """Resolve every link through the archive's other links, as the kernel would
    after extraction; refuse one that ends up outside the root (e.g. ``p -> d/..``
    with ``d -> .`` is lexically inside but really ``..``)."""

    def resolve(path_parts: list[str], depth: int) -> list[str] | None:
        """Real location of ``path_parts`` (a list of components from the root), or
        ``None`` when it leaves the root."""
        out: list[str] = []
        queue = list(path_parts)
        while queue:
            part = queue.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if not out:
                    return None
                out.pop()
                continue
            out.append(part)
            here = "/".join(out)
            if here in symlinks:
                if depth >= _MAX_LINK_DEPTH:
                    return None
                target = symlinks[here]
                if target.startswith("/"):
                    return None
                sub = resolve(out[:-1] + target.split("/"), depth + 1)  # out[:-1] is real
                if sub is None:
                    return None
                out = sub
        return out

    for name, target in symlinks.items():
        parent = name.split("/")[:-1]
        if resolve(parent + target.split("/"), 0) is None:
            raise UnsafeArchiveError(
                f"symbolic link {name!r} -> {target!r} leads outside the archive through "
                "other links in it (or loops); links must stay inside -- replace them by files",
                member=name,
            )


# -- extract ---------------------------------------------------------------------------


def extract_archive(data: bytes, dest: Path, limits: ArchiveLimits) -> None:
    """Validate ``data`` (see :func:`validate_archive`), then unpack it to ``dest``.

    ``dest`` must not exist, or be an empty directory. Unpacks into a temporary
    directory beside ``dest`` with tarfile's ``"data"`` filter (a second guard), then
    renames it to ``dest``; on any error nothing is left behind. Raises
    :class:`UnsafeArchiveError` / :class:`ArchiveTooLargeError` for a refused archive,
    ``FileExistsError`` for a non-empty ``dest``.
    """
    validate_archive(data, limits)
    with staged_directory(dest) as tmp:
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                tar.extractall(tmp, filter="data")
        except tarfile.FilterError as exc:
            raise UnsafeArchiveError(f"the archive was refused while extracting: {exc}") from None
