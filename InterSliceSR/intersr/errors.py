"""Errors the engine reports to users: each carries a message that says what to do."""


class InterSRError(Exception):
    """Base class: the command line prints the message and exits with `exit_code`."""

    exit_code = 1


class InputError(InterSRError):
    """Bad input or options: nothing was written."""

    exit_code = 2


class ResourceError(InterSRError):
    """Not enough memory, or the requested device is not available."""

    exit_code = 3


class WeightsError(InterSRError):
    """Shipped weights missing or corrupted (sha256 mismatch)."""

    exit_code = 4


class Cancelled(InterSRError):
    """The run was interrupted (SIGINT/SIGTERM); temporary files were removed."""

    exit_code = 130
