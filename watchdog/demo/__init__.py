"""The demo: a stand-in stamps API (``service``), its releases (``versions``) and traffic (``traffic``).

Nothing is imported here on purpose: ``python -m watchdog.demo.service`` would otherwise find its
own module already imported and warn.
"""
