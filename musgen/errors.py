"""Errors a user can fix. The CLI prints them as one line and exits with status 2."""


class MusgenError(Exception):
    """Base class for expected, user-facing errors (bad flags, bad input, missing files)."""


class ConfigError(MusgenError):
    """A config file or ``--set`` override is invalid."""


class CheckpointError(MusgenError):
    """A checkpoint is missing, incomplete, of another family, or of an unknown format."""


def first_line(err: BaseException | str, limit: int = 200) -> str:
    """The first non-empty line of an exception's message (or of a text), at most ``limit``
    characters; the exception's type name when it has no message. Libraries' messages are often
    several lines long; a user sees one."""
    text = (err if isinstance(err, str) else str(err)).strip()
    if not text:
        return "" if isinstance(err, str) else type(err).__name__
    return text.splitlines()[0][:limit]
