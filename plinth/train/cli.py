"""``plinth train local CONFIG [--json]``: train, evaluate and export in one process.

The control plane's CLI (``plinth train local``) imports :func:`local` lazily; the same is
reachable without it as ``python -m plinth.train local CONFIG [--json]``.

Output: progress and logs go to stderr; stdout gets a short human summary, or with
``--json`` one JSON object as the last line (test ``auc``, ``logloss``, train
``samples_per_s``, ``steps``, ``calibration``, ``numeric_transforms``, ``package`` ...);
``--report FILE.html`` writes the page of :mod:`plinth.train.report`. Exit codes: 0 success, 2 bad config or
data (the message says what to fix), 3 the loss diverged (the message names the setting to
change; the last good checkpoint stays), 143 stopped by SIGTERM after writing a checkpoint
(rerun to resume), 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
from pathlib import Path
from typing import Any

__all__ = ["local", "main"]


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None  # JSON has no NaN; an undefined AUC (one class) is null
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    return v


def local(config: Path, json_output: bool, report: Path | None = None) -> int:
    """Run a local training job from the YAML at ``config``; return the exit code.

    ``report``: also write the HTML training report (loss curve, calibration plot, per-field
    table sizes) there."""
    from plinth.data.reader import DataError
    from plinth.data.schema import SchemaError
    from plinth.sparse.jagged import BatchError
    from plinth.train.config import ConfigError, load_config

    try:
        cfg = load_config(Path(config))
        from plinth.train.trainer import Trainer, TrainingDiverged, TrainingInterrupted

        trainer = Trainer(cfg)
        # SIGTERM (a cancel or a preemption's grace period): checkpoint, then exit 143.
        previous = signal.signal(signal.SIGTERM, lambda *_: trainer.request_stop())
        try:
            result = trainer.fit()
        finally:
            signal.signal(signal.SIGTERM, previous)
    except (ConfigError, DataError, SchemaError, BatchError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except TrainingInterrupted as e:
        print(f"stopped by SIGTERM at step {e.step}; checkpoint {e.checkpoint}; run the same "
              "command again to resume", file=sys.stderr)
        return 128 + signal.SIGTERM
    from plinth.train.report import summary_text, write_html

    result = _clean(result)
    if report is not None:
        try:
            result["report"] = str(write_html(report, result))
        except OSError as e:
            print(f"error: cannot write the report {report}: {e.strerror}", file=sys.stderr)
            return 2
    if json_output:
        print(json.dumps(result, default=str), flush=True)
    else:
        print(summary_text(result), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m plinth.train", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    lp = sub.add_parser("local", help="train, evaluate and export in this process")
    lp.add_argument("config", type=Path, help="training config YAML")
    lp.add_argument("--json", action="store_true", help="print the result as one JSON line")
    lp.add_argument("--report", type=Path, default=None, metavar="FILE.html",
                    help="write an HTML report: loss curve, calibration, table sizes")
    a = ap.parse_args(argv)
    return local(a.config, a.json, a.report)
