"""rollback-watchdog: watches every deploy and rolls a bad release back by running the runbook.

The import name ``watchdog`` is ours, not the filesystem-events package of the same name;
``tests/test_identity.py`` keeps it that way.
"""

__version__ = "0.1.0"
PROJECT = "rollback-watchdog"
