"""Local stand-ins for the outside systems the watchdog talks to.

GitHub cannot be reached from CI, the demo or an air-gapped install, so the project ships an
emulator that speaks the real wire protocol; clients are tested against it over real HTTP.
"""
