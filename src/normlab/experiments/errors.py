"""Opening a user's database, where a file that is not one is bad input. Torch-free, so
that reading commands stay light."""

from __future__ import annotations

from pathlib import Path

from normlab.errors import InputError
from normlab.store.db import Store, StoreError


def open_store(db: Path | str) -> Store:
    """The normlab database at ``db`` (created if missing); InputError if it is not one."""
    try:
        return Store(db)
    except (StoreError, OSError) as err:
        raise InputError(str(err)) from None
    except Exception as err:  # sqlite3.DatabaseError: a file that is not a database
        raise InputError(f"{db}: cannot open as a database ({err})") from None
