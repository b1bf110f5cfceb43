"""``python -m watchdog`` is the same as the ``rollback-watchdog`` console script."""

from watchdog.cli import main

raise SystemExit(main())
