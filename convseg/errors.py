"""The base class of convseg's errors, and the checkpoint errors that the
reading, key-map and loading modules share.

Every error convseg raises on purpose derives from :class:`ConvsegError`
(and from the built-in class it always had, e.g. ``ValueError``), so a
caller can catch them all with one class. The message names the file, key or
value that is wrong and a remedy a Python user can apply (a config key, a
function, an environment variable). ``tool_hint``, when set, is the same
remedy for the command-line tools (a flag); :func:`convseg.cli.run_tool`
prints it after the message.
"""
from __future__ import annotations


class ConvsegError(Exception):
    """An error whose message says what is wrong and what to do."""

    #: the remedy spelled for the command-line tools, or None
    tool_hint: str | None = None

    def for_tools(self) -> str:
        """The message as the tools print it: with ``tool_hint`` if any."""
        return f'{self} {self.tool_hint}' if self.tool_hint else str(self)


class CheckpointFormatError(ConvsegError, ValueError):
    """Raised when a checkpoint's layout is not one convseg can map."""


class CheckpointMismatchError(ConvsegError, ValueError):
    """Raised when a checkpoint does not fit the model it is loaded into."""
