"""Named entries of one kind (norms, activations, probes, datasets, model families),
each registered once.

A registry holds plain, torch-free descriptions; where an entry has an implementation
that needs torch, the entry names it as ``"module:attribute"`` and ``load`` imports it
on first use. So the run configuration can list the valid names (and a study file be
checked) without importing torch, and adding a norm, probe or model family is one new
module plus one ``register`` line.
"""

from __future__ import annotations

import importlib
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one ``kind`` by name, in registration order."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` under ``name``; a name is registered once."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} {name!r}: choose one of {', '.join(self._entries)}"
            ) from None

    def names(self) -> tuple[str, ...]:
        """Every registered name, in registration order."""
        return tuple(self._entries)


def load(target: str) -> Any:
    """The object ``"package.module:attribute"`` names, imported on first use."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)
