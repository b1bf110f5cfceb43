"""Pure statistics: arrays of counts in, a verdict out. No I/O, no clock, no config files."""

from detectors.verdict import Outcome, Verdict

__all__ = ["Outcome", "Verdict"]
