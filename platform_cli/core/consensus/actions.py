"""The actions an entry carries: a table of types, each parsed from its canonical map.

- ``registry.update``: ``{"type", "update": <sudo-signed envelope, embedded>,
  "effective_block": B}``: the challenge-registry change, taking effect at chain block B
  on every validator.
- ``weights``: an epoch's weight vector (``weights.py``).
- ``validators``: ``{"type", "set": {"block", "validators"}}``: the validator set of the
  snapshot at ``block``, in force from the next height on.

A new kind (a checkpoint is next) is one parser here, one rule in ``ledger.py`` for how
it changes the ledger and one in ``validity.py`` for when a validator approves it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from platform_cli.core import envelope as env
from platform_cli.core import registry as reg
from platform_cli.core.consensus.entry import embed, unembed
from platform_cli.core.consensus.validators import ValidatorSet, ValidatorSetError
from platform_cli.core.consensus.weights import WEIGHTS, WeightsAction, WeightsError
from platform_cli.core.consensus.weights import parse_action as parse_weights

REGISTRY_UPDATE = "registry.update"
VALIDATORS = "validators"


class ActionError(ValueError):
    """An action map that is not a well-formed action."""


@dataclass(frozen=True)
class RegistryAction:
    update: str
    """The sudo-signed envelope, embedded (``entry.embed``)."""
    effective_block: int

    @classmethod
    def of(cls, envelope: env.Envelope, effective_block: int) -> RegistryAction:
        return cls(embed(envelope), effective_block)

    @property
    def envelope(self) -> env.Envelope:
        return unembed(self.update)

    @property
    def update_id(self) -> str:
        return _message_id(self.update)

    def authorized(self, sudo: str) -> reg.RegistryUpdate:
        """The parsed update if the sudo key signed it (``RegistryError`` otherwise)."""
        return _authorized(self.update, sudo)

    def to_canonical(self) -> dict[str, Any]:
        return {"type": REGISTRY_UPDATE, "update": self.update, "effective_block": self.effective_block}


@lru_cache(maxsize=1024)
def _message_id(update: str) -> str:
    return unembed(update).message_id()


@lru_cache(maxsize=1024)
def _authorized(update: str, sudo: str) -> reg.RegistryUpdate:
    """Parsing a challenge spec is the costly part of checking an update: once per bytes."""
    return reg.authorize(unembed(update), sudo)


@dataclass(frozen=True)
class ValidatorsAction:
    validators: ValidatorSet

    def to_canonical(self) -> dict[str, Any]:
        return {"type": VALIDATORS, "set": self.validators.to_canonical()}


Action = RegistryAction | ValidatorsAction | WeightsAction


def _registry(value: dict[str, Any]) -> RegistryAction:
    if set(value) != {"type", "update", "effective_block"}:
        raise ActionError("a registry.update action has exactly 'type', 'update' and 'effective_block'")
    block = value["effective_block"]
    if isinstance(block, bool) or not isinstance(block, int) or not 0 <= block < 2**32:
        raise ActionError(f"effective_block {block!r} is not a block number")
    try:
        unembed(value["update"])
    except env.EnvelopeError as exc:
        raise ActionError(f"the update is not a signed envelope: {exc}") from None
    return RegistryAction(value["update"], block)


def _validators(value: dict[str, Any]) -> ValidatorsAction:
    if set(value) != {"type", "set"}:
        raise ActionError("a validators action has exactly 'type' and 'set'")
    try:
        return ValidatorsAction(ValidatorSet.from_canonical(value["set"]))
    except ValidatorSetError as exc:
        raise ActionError(str(exc)) from None


def _weights(value: dict[str, Any]) -> WeightsAction:
    try:
        return parse_weights(value)
    except WeightsError as exc:
        raise ActionError(str(exc)) from None


PARSERS: Mapping[str, Callable[[dict[str, Any]], Action]] = MappingProxyType(
    {REGISTRY_UPDATE: _registry, WEIGHTS: _weights, VALIDATORS: _validators}
)


def parse_action(value: Any) -> Action:
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise ActionError("an action is a map with a 'type'")
    parser = PARSERS.get(value["type"])
    if parser is None:
        raise ActionError(f"unknown action type {value['type']!r}")
    return parser(value)
