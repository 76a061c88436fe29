"""Bad input, as every floor reports it: one line naming what is wrong, and the option
(or parameter) it concerns as data, so that the command line can name its flag without
reading the message."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input: the message is one line naming the file, field or option and value;
    ``option`` is the parameter it concerns (an api parameter's name, e.g. ``max_stack``),
    when one does."""

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option
