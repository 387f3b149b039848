"""Stop pyarrow from searching the disk for optional modules on every conversion.

``pa.array(python_list)`` infers the type and, to do so, imports
``dateutil.relativedelta`` on *every* call (its pandas probe is cached); when dateutil is
not installed, each failed import searches all of ``sys.path`` again (Python caches only
successes): about 1-2 ms a column, the largest fixed cost of
``ModelPackage.predict_records`` on a small request.
Marking a module that cannot be found as absent (``sys.modules[name] = None``, Python's
own way to say "import fails") makes those imports fail at once. Modules that exist are
left alone.
"""

from __future__ import annotations

import importlib.util
import sys

__all__ = ["skip_missing_optional_imports"]

PYARROW_OPTIONAL = ("dateutil", "dateutil.relativedelta")


def skip_missing_optional_imports(names: tuple[str, ...] = PYARROW_OPTIONAL) -> list[str]:
    """Mark those of ``names`` that cannot be imported as absent; return them."""
    marked = []
    for name in names:
        if name in sys.modules:
            continue
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a parent package is missing
            found = False
        if not found:
            sys.modules[name] = None  # type: ignore[assignment]
            marked.append(name)
    return marked
