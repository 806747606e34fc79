"""The ledger: what the committed log says, folded into state (pure).

Every validator starts from the same :class:`Genesis` (network, sudo key, first
validator set, starting registry) and applies the same decided entries in the same
order, so every validator holds the same ledger at the same height. :meth:`Ledger.apply`
is deterministic and needs nothing but the entry: it is also how a validator that
catches up from certificates rebuilds the state it missed.

Rules applied to every entry (whoever proposed it):

- the entry extends the log: height + 1 and ``prev`` the id of the last entry;
- ``registry.update``: not applied before, and the registry's pure ``apply`` accepts it
  with the sudo key at its effective block (which never decreases along the log);
- ``weights``: one vector per (mechid, epoch);
- ``validators``: a snapshot newer than the current set's; the set changes at the next
  height.

The registry keeps the committed history (``core/registry.py``): the versions active at
chain block B (``RegistryState.active_at``) are those of the updates whose effective
block is at most B, so every validator switches at the same block.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from platform_cli.core import registry as reg
from platform_cli.core.aggregation import ChallengeShare
from platform_cli.core.consensus.actions import (
    Action,
    ActionError,
    RegistryAction,
    ValidatorsAction,
    parse_action,
)
from platform_cli.core.consensus.entry import Entry, EntryError, genesis_id, parse_entry
from platform_cli.core.consensus.validators import ValidatorSet
from platform_cli.core.consensus.weights import WeightsAction
from platform_cli.core.envelope import Network


class LedgerError(ValueError):
    """An entry that does not apply to the ledger."""


@dataclass(frozen=True)
class Genesis:
    network: Network
    sudo: str
    validators: ValidatorSet
    registry: reg.RegistryState = field(default_factory=reg.RegistryState)

    @property
    def id(self) -> str:
        return genesis_id(self.network, self.validators.set_id)


@dataclass(frozen=True)
class WeightsCommit:
    height: int
    action: WeightsAction


@dataclass(frozen=True)
class Ledger:
    genesis: Genesis
    height: int
    head: str
    validators: ValidatorSet
    registry: reg.RegistryState
    weights: Mapping[tuple[int, int], WeightsCommit] = field(default_factory=lambda: MappingProxyType({}))
    pending_validators: ValidatorSet | None = None
    """A set an action of the entry being applied chose; in force from the next height."""

    @classmethod
    def start(cls, genesis: Genesis) -> Ledger:
        return cls(genesis, 0, genesis.id, genesis.validators, genesis.registry)

    @property
    def last_effective_block(self) -> int:
        return self.registry.last_effective_block

    def committed_update(self, update_id: str) -> bool:
        return any(change.update_id == update_id for change in self.registry.history)

    def apply(self, entry: Entry) -> Ledger:
        if entry.height != self.height + 1:
            raise LedgerError(f"entry is for height {entry.height}, the next height is {self.height + 1}")
        if entry.prev != self.head:
            raise LedgerError(
                f"entry does not extend the log: prev {entry.prev[:16]}…, head {self.head[:16]}…"
            )
        ledger = self
        for index, raw in enumerate(entry.actions):
            try:
                ledger = ledger.apply_action(parse_action(raw), entry.height)
            except (ActionError, LedgerError) as exc:
                raise LedgerError(f"action {index}: {exc}") from None
        validators = ledger.pending_validators or ledger.validators
        return replace(
            ledger, height=entry.height, head=entry.id, validators=validators, pending_validators=None
        )

    def apply_action(self, action: Action, height: int) -> Ledger:
        if isinstance(action, RegistryAction):
            return self._apply_registry(action)
        if isinstance(action, WeightsAction):
            key = (action.mechid, action.epoch)
            if key in self.weights:
                raise LedgerError(f"weights of mechanism {key[0]} epoch {key[1]} are already decided")
            return replace(
                self, weights=MappingProxyType({**self.weights, key: WeightsCommit(height, action)})
            )
        return self._apply_validators(action)

    def _apply_registry(self, action: RegistryAction) -> Ledger:
        update_id = action.update_id
        if self.committed_update(update_id):
            raise LedgerError(f"registry update {update_id[:16]}… is already in the log")
        try:
            registry = reg.apply(
                self.registry, action.envelope, self.genesis.sudo, effective_block=action.effective_block
            )
        except reg.RegistryError as exc:
            raise LedgerError(f"registry update does not apply: {exc}") from None
        return replace(self, registry=registry)

    def _apply_validators(self, action: ValidatorsAction) -> Ledger:
        current = self.pending_validators or self.validators
        if action.validators.block <= current.block:
            raise LedgerError(
                f"validator set of block {action.validators.block} is not newer than block {current.block}"
            )
        return replace(self, pending_validators=action.validators)


def apply_value(ledger: Ledger, value: object) -> Ledger:
    """Parse and apply a decided value; :class:`LedgerError` says what is wrong."""
    try:
        entry = parse_entry(value)
    except EntryError as exc:
        raise LedgerError(str(exc)) from None
    return ledger.apply(entry)


def challenge_shares(registry: reg.RegistryState, block: int, mechid: int) -> tuple[ChallengeShare, ...]:
    """The challenges of a mechanism active at chain ``block``, with their shares, by id."""
    shares = [
        ChallengeShare(r.spec.id, r.spec.scoring.emission_ppm, r.spec.min_validators)
        for r in registry.active_at(block).values()
        if r.spec.scoring.mechanism == mechid
    ]
    return tuple(sorted(shares, key=lambda s: s.challenge))
