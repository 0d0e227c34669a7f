"""Errors a user can fix. The CLI prints them as one line and exits with status 2."""


class MusgenError(Exception):
    """Base class for expected, user-facing errors (bad flags, bad input, missing files)."""


class ConfigError(MusgenError):
    """A config file or ``--set`` override is invalid."""


class CheckpointError(MusgenError):
    """A checkpoint is missing, incomplete, of another family, or of an unknown format."""
