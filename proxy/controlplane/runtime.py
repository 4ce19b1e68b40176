"""The control plane inside a running proxy: store, policies and the key/policy cache.

Built in the app's lifespan after the schema upgrade and the ledger's start (it shares the
ledger's engine): the keys and policies are loaded into memory, and a ``ChangeFeed`` keeps
them fresh. A change made through this replica's admin API reloads at once and is
published to the others.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from proxy.controlplane.cache import ChangeFeed, identities
from proxy.controlplane.policies import PolicyStore
from proxy.controlplane.store import Store
from proxy.spend import LedgerSpendSource

if TYPE_CHECKING:
    from budgets import Budgets
    from proxy.app import Runtime
    from proxy.ledger import LedgerWriter

__all__ = ["ControlPlane"]

log = logging.getLogger("spendgate.controlplane")


class ControlPlane:
    def __init__(self, runtime: Runtime, ledger: LedgerWriter, budgets: Budgets | None) -> None:
        config = runtime.config
        self.runtime = runtime
        self.config = config
        self._budgets = budgets  # always built; handed to the runtime only while it has policies
        self.store = Store(ledger.engine, config_keys=config.keys, on_change=self._changed)
        self.policies = PolicyStore(
            self.store,
            config_budgets=config.budgets,
            config_rate_limits=config.rate_limits,
            timezone=config.budget_settings.timezone,
            spend_source=LedgerSpendSource(ledger),
        )
        self.feed = ChangeFeed(
            self.reload,
            redis_url=config.storage.redis_url,
            refresh_s=config.admin.key_refresh_s,
        )
        self._policy_state: Any = None

    async def start(self) -> None:
        """Load keys and policies (the schema is upgraded before the ledger starts)."""
        await self.feed.start()

    async def reload(self) -> None:
        """Swap in the database's keys and policies (no request ever waits on this)."""
        active, managed = await self.store.active_keys()
        self.runtime.keys.set_db_keys(identities(active), managed=managed)
        if self._budgets is None:
            return
        policies, rate_limits = await self.policies.runtime_policies()
        if (policies, rate_limits) != self._policy_state:
            await self._budgets.update(policies, rate_limits)
            self._policy_state = (policies, rate_limits)
        self.runtime.budgets = self._budgets if policies or rate_limits else None

    async def _changed(self) -> None:
        await self.feed.changed()

    async def aclose(self) -> None:
        await self.feed.aclose()
