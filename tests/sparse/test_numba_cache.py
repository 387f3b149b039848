"""The numba cache guard follows the modules the kernels really import."""

import importlib
from pathlib import Path

import pytest
from numba.core.dispatcher import Dispatcher
from numba.core.extending import _Intrinsic

import plinth.sparse
from plinth.sparse import _numba_cache

MODULES = sorted(
    p.stem for p in Path(plinth.sparse.__file__).parent.glob("*.py") if p.stem != "__init__"
)


@pytest.mark.parametrize("stem", MODULES)
def test_every_module_using_a_siblings_compiled_code_is_guarded(stem):
    mod = importlib.import_module(f"plinth.sparse.{stem}")
    compiled_from = {
        v.__module__.rpartition(".")[2]
        for v in vars(mod).values()
        if isinstance(v, Dispatcher | _Intrinsic)
        and v.__module__.startswith("plinth.sparse.")
        and v.__module__ != mod.__name__
    }
    if not compiled_from:
        return
    # The module checks the cache before those imports, and the check sees all of them.
    assert "drop_stale_numba_cache" in vars(mod)
    assert compiled_from <= set(_numba_cache._import_graph(stem))


def test_kernels_guard_reaches_every_helper_module():
    graph = _numba_cache._import_graph("_kernels")
    assert {"_hash", "_pointers", "optimizers", "sketch", "config"} <= set(graph)


def test_cache_dropped_only_when_a_dependency_changes(tmp_path, monkeypatch):
    monkeypatch.setattr(_numba_cache, "_HERE", tmp_path)
    (tmp_path / "k.py").write_text("from plinth.sparse.h import f\nfrom . import g\n")
    (tmp_path / "h.py").write_text("X = 1\n")
    (tmp_path / "g.py").write_text("import plinth.sparse.h\n")
    (tmp_path / "u.py").write_text("Y = 1\n")  # not imported by k
    cache = tmp_path / "__pycache__"
    cache.mkdir()

    def populate():
        for name in (
            "k.run-1.py311.nbi",
            "k.run-1.py311.1.nbc",
            "g.f-2.py311.nbi",
            "h.f-3.py311.nbi",
        ):
            (cache / name).write_bytes(b"")

    def left():
        return sorted(p.name for p in cache.glob("*.nb*"))

    populate()
    _numba_cache.drop_stale_numba_cache(str(tmp_path / "k.py"))  # no stamp yet
    # k's kernels and g's (which inline from h) go; h's own do not depend on a sibling.
    assert left() == ["h.f-3.py311.nbi"]
    populate()
    _numba_cache.drop_stale_numba_cache(str(tmp_path / "k.py"))
    assert len(left()) == 4  # nothing changed
    (tmp_path / "u.py").write_text("Y = 2\n")
    _numba_cache.drop_stale_numba_cache(str(tmp_path / "k.py"))
    assert len(left()) == 4  # an unrelated module changed
    (tmp_path / "h.py").write_text("X = 2\n")
    _numba_cache.drop_stale_numba_cache(str(tmp_path / "k.py"))
    assert left() == ["h.f-3.py311.nbi"]
