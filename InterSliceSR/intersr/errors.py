"""Errors the engine reports to users: each carries a message that says what to do.

Exit codes of `intersr` (docs/faults.md lists every fault and the code it gets):
0 success (OUTPUT complete) | 1 internal error (a bug: report it; `--debug` shows the
traceback) | 2 bad input or options | 3 resources: memory, device, disk space | 4 weights
missing or corrupted | 5 OUTPUT could not be written | 6 `intersr batch`: some volumes failed
(the others were written; the report lists each) | 130 cancelled (SIGINT, SIGTERM, SIGHUP).
"""


class InterSRError(Exception):
    """Base class: the command line prints the message and exits with `exit_code`."""

    exit_code = 1


class InputError(InterSRError):
    """Bad input or options: nothing was written."""

    exit_code = 2


class ResourceError(InterSRError):
    """Not enough memory or disk space, or the requested device is not available."""

    exit_code = 3


class WeightsError(InterSRError):
    """Shipped weights missing or corrupted (sha256 mismatch)."""

    exit_code = 4


class OutputError(InterSRError):
    """OUTPUT could not be written for a reason other than a full disk; nothing was left."""

    exit_code = 5


class BatchFailed(InterSRError):
    """`intersr batch`: some volumes failed; every other volume was written."""

    exit_code = 6


class Cancelled(InterSRError):
    """The run was interrupted (SIGINT/SIGTERM); temporary files were removed."""

    exit_code = 130


# Signals the command turns into `Cancelled` (SIGINT arrives as KeyboardInterrupt); helper
# processes reset them (intersr.train's batch workers).
CANCEL_SIGNALS = ("SIGTERM", "SIGHUP")
