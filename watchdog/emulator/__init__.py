"""Local stand-ins for the outside systems the watchdog talks to.

GitHub, PagerDuty and Unleash cannot be reached from CI, the demo or an air-gapped install, so the
project ships emulators that speak their real wire protocols (``github``, ``pagerduty``,
``unleash``, sharing the HTTP server, fault injection and request log of ``base``); clients are
tested against them over real HTTP.
"""
