"""Bad input as the application layer reports it, and opening a user's database (a file
that is not one is bad input). Torch-free, so that reading commands stay light."""

from __future__ import annotations

from pathlib import Path

from normlab.store.db import Store, StoreError


class InputError(ValueError):
    """Bad input: the message is one line naming the file, field or option and value;
    ``option`` is the parameter it concerns, when one does."""

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


def open_store(db: Path | str) -> Store:
    """The normlab database at ``db`` (created if missing); InputError if it is not one."""
    try:
        return Store(db)
    except (StoreError, OSError) as err:
        raise InputError(str(err)) from None
    except Exception as err:  # sqlite3.DatabaseError: a file that is not a database
        raise InputError(f"{db}: cannot open as a database ({err})") from None
