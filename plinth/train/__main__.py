"""``python -m plinth.train local CONFIG [--json]``."""

from plinth.train.cli import main

raise SystemExit(main())
