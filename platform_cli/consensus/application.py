"""The consensus application: the ledger, the commit log and the local view, as the
machine's ``Application`` port.

It holds the current :class:`Ledger` in memory (rebuilt from the commit log at start)
and delegates every judgement to the pure ``core/consensus/validity.py``. ``commit``
appends the decision to the :class:`CommitStore` durably *before* the ledger moves on
and before the machine signs anything at the next height, so a restart finds the log
and the signing log in step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from platform_cli.core.consensus import validity
from platform_cli.core.consensus.ledger import Genesis, Ledger, LedgerError, apply_value
from platform_cli.core.consensus.messages import value_id
from platform_cli.core.consensus.ports import Commit
from platform_cli.core.consensus.validators import ValidatorSet


class CommitStore(Protocol):
    def append(self, commit: Commit) -> None:
        """Store a decided entry with its certificate, durably; refuse a broken chain."""
        ...

    def commits(self, from_height: int = 1) -> Iterator[Commit]: ...


@dataclass
class MemoryCommitStore:
    stored: list[Commit] = field(default_factory=list)

    def append(self, commit: Commit) -> None:
        if commit.height != len(self.stored) + 1:
            raise LedgerError(f"commit of height {commit.height} does not follow height {len(self.stored)}")
        self.stored.append(commit)

    def commits(self, from_height: int = 1) -> Iterator[Commit]:
        yield from self.stored[max(0, from_height - 1) :]


def replay(genesis: Genesis, store: CommitStore) -> Ledger:
    """The ledger after every stored commit."""
    ledger = Ledger.start(genesis)
    for commit in store.commits():
        ledger = apply_value(ledger, commit.value)
    return ledger


class LedgerApplication:
    def __init__(
        self,
        ledger: Ledger,
        store: CommitStore,
        view: validity.LocalView,
        checker: validity.Checker,
        wants: Callable[[Ledger, int], bool],
    ) -> None:
        self.ledger = ledger
        self.store = store
        self.view = view
        self.checker = checker
        self.wants = wants
        self._next: dict[str, Ledger | LedgerError] = {}
        """The ledger each value of the current height leads to (or why it cannot apply)."""

    def _applied(self, value: Any) -> Ledger:
        key = value_id(value)
        if key not in self._next:
            try:
                self._next[key] = apply_value(self.ledger, value)
            except LedgerError as exc:
                self._next[key] = exc
        result = self._next[key]
        if isinstance(result, LedgerError):
            raise result
        return result

    def has_work(self, height: int, now_ms: int) -> bool:
        return self.wants(self.ledger, now_ms)

    def propose(self, height: int, prev: str, now_ms: int) -> dict[str, Any]:
        return validity.propose(self.ledger, self.view, self.checker, now_ms)

    def validate(self, height: int, prev: str, value: Any, now_ms: int) -> str | None:
        return validity.validate(self.ledger, self.view, self.checker, value, now_ms)

    def decidable(self, height: int, prev: str, value: Any) -> str | None:
        try:
            self._applied(value)
        except LedgerError as exc:
            return str(exc)
        return None

    def commit(self, commit: Commit) -> ValidatorSet:
        ledger = self._applied(commit.value)
        self.store.append(commit)
        self.ledger = ledger
        self._next.clear()
        return ledger.validators
