"""Which TCP addresses a set of processes listens on, read from /proc (Linux): the
loopback-only checks of the Ray cluster and of the training gang's rendezvous."""

import ipaddress
import os


def listening(pids: set[int]) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state owned by one of `pids`."""
    inodes: set[str] = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    out = []
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        with open(table) as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[3] != "0A" or parts[9] not in inodes:  # 0A: LISTEN
                    continue
                hexaddr, hexport = parts[1].split(":")
                raw = bytes.fromhex(hexaddr)
                # /proc/net prints the address as native-endian 32-bit words.
                words = [raw[i : i + 4][::-1] for i in range(0, len(raw), 4)]
                addr = ipaddress.ip_address(b"".join(words))
                if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
                    addr = addr.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
                out.append((str(addr), int(hexport, 16)))
    return out


def descendants(roots: list[int]) -> set[int]:
    """`roots` and every process below them, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    todo, out = list(roots), set()
    while todo:
        pid = todo.pop()
        if pid not in out:
            out.add(pid)
            todo.extend(children.get(pid, []))
    return out
