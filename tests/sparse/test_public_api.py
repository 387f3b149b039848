"""The names ``plinth.sparse`` exports resolve, and importing it stays cheap."""

import subprocess
import sys

import plinth.sparse


def test_every_exported_name_resolves() -> None:
    for name in plinth.sparse.__all__:
        assert getattr(plinth.sparse, name) is not None


def test_import_does_not_load_numba_or_torch() -> None:
    code = "import sys, plinth.sparse; print('numba' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
