"""Which provider serves a model name.

Exact names win over patterns; among glob patterns the most specific (most literal
characters) wins, then configuration order. So ``mock-*`` beats a catch-all ``*``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

from proxy.config import ProviderConfig

__all__ = ["ModelRouter"]


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


class ModelRouter:
    def __init__(self, providers: Iterable[ProviderConfig]) -> None:
        self.providers = {p.name: p for p in providers}
        self._exact: dict[str, ProviderConfig] = {}
        globs: list[tuple[int, int, str, ProviderConfig]] = []
        for order, p in enumerate(self.providers.values()):
            for pattern in p.models:
                if _is_glob(pattern):
                    literal = sum(1 for c in pattern if c not in "*?[]")
                    globs.append((-literal, order, pattern, p))
                else:
                    self._exact.setdefault(pattern, p)
        self._globs = [(pattern, p) for _, _, pattern, p in sorted(globs, key=lambda g: g[:2])]
        self._cache: dict[str, ProviderConfig | None] = {}

    def route(self, model: str) -> ProviderConfig | None:
        """The provider for ``model``, or None when no provider takes it."""
        try:
            return self._cache[model]
        except KeyError:
            pass
        found = self._exact.get(model)
        if found is None:
            found = next((p for pat, p in self._globs if fnmatch.fnmatchcase(model, pat)), None)
        if len(self._cache) < 10_000:  # model names come from clients: bound the memo
            self._cache[model] = found
        return found
