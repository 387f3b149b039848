"""Keep numba's on-disk cache (``cache=True``) honest across the modules of plinth.sparse.

numba keys a cached function by its own source file only, so a kernel that inlines a
compiled helper from a sibling module (``mix64`` from ``_hash``, the typed pointers of
``_pointers``, ...) would keep running stale machine code after that sibling is edited.
:func:`drop_stale_numba_cache` follows the module's imports of plinth.sparse modules,
transitively and as written in the sources (so a new helper module is picked up by the
import that uses it), keeps a digest of their sources beside the cache and drops the
cached kernels when it changes. A module whose cached kernels call a sibling's compiled
code calls it first thing, before those imports. Standard library only: it runs before numba
loads anything.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

__all__ = ["drop_stale_numba_cache", "sibling_imports"]

_PACKAGE = __name__.rpartition(".")[0]  # "plinth.sparse"
_HERE = Path(__file__).resolve().parent


def sibling_imports(stem: str) -> set[str]:
    """Names of the modules of this package that module ``stem`` imports (any import
    statement, top-level or not, absolute or relative)."""
    tree = ast.parse((_HERE / f"{stem}.py").read_bytes())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level > 1:
                continue
            base = _PACKAGE if node.level == 1 else ""
            base = ".".join(p for p in (base, node.module or "") if p)
            if base == _PACKAGE:  # from plinth.sparse import _kernels
                found.update(a.name for a in node.names)
            elif base.startswith(_PACKAGE + "."):
                found.add(base[len(_PACKAGE) + 1 :].split(".")[0])
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith(_PACKAGE + "."):
                    found.add(a.name[len(_PACKAGE) + 1 :].split(".")[0])
    return {m for m in found if m != stem and (_HERE / f"{m}.py").is_file()}


def _import_graph(stem: str) -> dict[str, set[str]]:
    """``stem`` and every package module it reaches, each with its direct sibling imports."""
    graph: dict[str, set[str]] = {}
    todo = [stem]
    while todo:
        m = todo.pop()
        if m not in graph:
            graph[m] = sibling_imports(m)
            todo.extend(graph[m])
    return graph


def _digest(stems: list[str]) -> str:
    h = hashlib.sha256()
    for m in stems:
        h.update(m.encode() + b"\0" + (_HERE / f"{m}.py").read_bytes() + b"\0")
    return h.hexdigest()


def _unchanged(stem: str, stamp: Path) -> bool:
    """Whether the stamp's digest still matches: the module itself and the package
    modules it reached when the stamp was written (listed in the stamp, so that an
    import does not cost a parse of every source; a new import changes the module's
    own source, which sends the check down the full path)."""
    try:
        digest, *deps = stamp.read_bytes().decode("utf-8").split("\n")
        return digest == _digest([stem, *deps])
    except (OSError, ValueError):  # no stamp, a module gone, a damaged stamp
        return False


def drop_stale_numba_cache(module_file: str) -> None:
    """Drop the cached kernels of the module at ``module_file`` (and of the modules it
    reaches that themselves compile in a sibling's code) when the source of any package
    module it reaches has changed since the last check."""
    stem = Path(module_file).stem
    cache = _HERE / "__pycache__"
    stamp = cache / f"{stem}.deps"
    if _unchanged(stem, stamp):
        return
    try:
        graph = _import_graph(stem)
        deps = sorted(set(graph) - {stem})
        digest = _digest([stem, *deps])
        for m, uses in graph.items():
            if m == stem or uses:
                for pattern in (f"{m}.*.nbi", f"{m}.*.nbc"):
                    for f in cache.glob(pattern):
                        f.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        stamp.write_text("\n".join([digest, *deps]))
    except (OSError, SyntaxError, ValueError):
        pass  # read-only install: numba then caches elsewhere or not at all
