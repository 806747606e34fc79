"""When a validator approves an entry, and what it proposes (pure).

``valid(v)`` in the paper is :func:`validate` here: the entry must apply to the ledger
(``ledger.py``, the rules every entry obeys whoever proposed it) *and* each action must
pass this validator's own checks against what it knows locally (:class:`LocalView`):

- ``registry.update``: a valid signature of the sudo key on this network, and an
  effective block at most ``activation_window`` blocks ahead of this validator's chain
  head (the ledger already refuses one before the previous update's);
- ``validators``: the named snapshot's set, exactly as this validator reads it;
- ``weights``: the epoch's cutoff has passed here; the inputs (snapshot, challenges,
  burn uid) are the ones this validator expects; the bundles are signed by distinct
  validators forming a quorum; no bundle this validator held before the cutoff is left
  out; and the vector recomputed from the named report sets has the same hash.

A validator that lacks data (a snapshot, a report set) refuses with a reason that says
so; the adapter fetches it and :meth:`Machine.wake` re-asks.

Every local check may turn from a refusal into an approval as time passes (the chain
head grows, the cutoff passes, data arrives) but never back: a value a validator locked
on must stay acceptable to the others, or the lock would stall the height for good.
That is why an effective block is not required to lie in the future: an update decided
after its block takes effect at once, the same way everywhere. :func:`propose` builds the
value an honest proposer proposes: a pending set change, pending registry updates that
apply, and the vector of an epoch whose cutoff has passed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from platform_cli.core import canonical
from platform_cli.core import envelope as env
from platform_cli.core import registry as reg
from platform_cli.core.consensus import weights as wt
from platform_cli.core.consensus.actions import (
    Action,
    ActionError,
    RegistryAction,
    ValidatorsAction,
    parse_action,
)
from platform_cli.core.consensus.entry import Entry, EntryError, parse_entry
from platform_cli.core.consensus.ledger import Ledger, LedgerError
from platform_cli.core.consensus.validators import ValidatorSet

REGISTRY_UPDATE_MAX_BYTES = 64 * 1024


@dataclass(frozen=True)
class ActionRules:
    """Network-wide constants for actions (every validator must use the same ones)."""

    activation_delay: int = 10
    """A proposer names an effective block this many blocks after its chain head."""
    activation_window: int = 100
    """A validator accepts effective blocks up to its head + window."""
    max_updates: int = 8
    """Registry updates per entry."""
    max_value_bytes: int = 48 * 1024
    """An entry's canonical size, so that a proposal fits one gossip message."""


class LocalView(Protocol):
    """What this validator knows besides the ledger (its chain view, bundles, reports)."""

    def chain_head(self) -> int: ...

    def validator_set_at(self, block: int) -> ValidatorSet | None: ...

    def newest_validator_set(self) -> ValidatorSet | None: ...

    def pending_updates(self) -> Iterable[env.Envelope]: ...

    def epochs_to_propose(self, now_ms: int) -> Iterable[tuple[int, int]]:
        """(mechid, epoch) pairs whose bundle cutoff and grace period have passed."""
        ...

    def weights_open(self, mechid: int, epoch: int, now_ms: int) -> bool: ...

    def weights_context(self, ledger: Ledger, mechid: int, epoch: int) -> wt.WeightsContext | None: ...

    def held_bundles(self, epoch: int) -> Iterable[wt.Bundle]:
        """One verified bundle per validator, the first one received."""
        ...

    def held_before_cutoff(self, epoch: int) -> Collection[str]:
        """Validators whose bundle for ``epoch`` this validator held before the cutoff."""
        ...

    def report_set(self, root: str) -> wt.ReportSet | None: ...


@dataclass(frozen=True)
class Checker:
    """Everything :func:`validate` and :func:`propose` need besides the ledger and the view."""

    network: env.Network
    verify_signature: env.SignatureVerifier
    rules: ActionRules = ActionRules()


def _entry_for(ledger: Ledger, value: Any) -> Entry:
    try:
        entry = parse_entry(value)
    except EntryError as exc:
        raise LedgerError(str(exc)) from None
    if entry.height != ledger.height + 1:
        raise LedgerError(f"entry is for height {entry.height}, the next height is {ledger.height + 1}")
    if entry.prev != ledger.head:
        raise LedgerError("entry does not extend our log")
    return entry


def validate(ledger: Ledger, view: LocalView, checker: Checker, value: Any, now_ms: int) -> str | None:
    """valid(v): None if this validator approves ``value``, else the reason it refuses."""
    try:
        entry = _entry_for(ledger, value)
    except LedgerError as exc:
        return str(exc)
    size = len(canonical.encode(value))
    if size > checker.rules.max_value_bytes:
        return f"entry of {size} bytes exceeds {checker.rules.max_value_bytes}"
    working = ledger
    for index, raw in enumerate(entry.actions):
        try:
            action = parse_action(raw)
            reason = _check(action, working, view, checker, now_ms)
            if reason is None:
                working = working.apply_action(action, entry.height)
        except (ActionError, LedgerError, wt.WeightsError) as exc:
            reason = str(exc)
        if reason is not None:
            return f"action {index} ({raw['type']}): {reason}"
    return None


def _check(action: Action, ledger: Ledger, view: LocalView, checker: Checker, now_ms: int) -> str | None:
    if isinstance(action, RegistryAction):
        return _check_registry(action, ledger, view, checker)
    if isinstance(action, ValidatorsAction):
        known = view.validator_set_at(action.validators.block)
        if known is None:
            return f"no snapshot of block {action.validators.block} here: sync the metagraph first"
        if known != action.validators:
            return f"the validator set of block {action.validators.block} differs from our snapshot"
        return None
    return _check_weights(action, ledger, view, checker, now_ms)


def _check_registry(action: RegistryAction, ledger: Ledger, view: LocalView, checker: Checker) -> str | None:
    policy = env.VerifyPolicy(
        network=checker.network, kinds={reg.UPDATE_KIND}, max_size=REGISTRY_UPDATE_MAX_BYTES, max_age_ms=None
    )
    try:
        env.verify(
            action.envelope, policy, verify_signature=checker.verify_signature, now_ms=action.envelope.ts_ms
        )
        action.authorized(ledger.genesis.sudo)
    except (env.EnvelopeError, reg.RegistryError) as exc:
        return str(exc)
    limit = view.chain_head() + checker.rules.activation_window
    if action.effective_block > limit:
        return f"effective block {action.effective_block} is more than {checker.rules.activation_window} blocks ahead of our chain head"
    return None


def _check_weights(
    action: wt.WeightsAction, ledger: Ledger, view: LocalView, checker: Checker, now_ms: int
) -> str | None:
    epoch, mechid = action.epoch, action.mechid
    if (mechid, epoch) in ledger.weights:
        return f"the vector of epoch {epoch} is already decided"
    if not view.weights_open(mechid, epoch, now_ms):
        return f"epoch {epoch}'s bundle cutoff has not passed here yet"
    context = view.weights_context(ledger, mechid, epoch)
    if context is None:
        return f"no snapshot for epoch {epoch} here: sync the metagraph first"
    expected = context.inputs()
    for name, value in expected.items():
        if action.inputs[name] != value:
            return f"{name} is {action.inputs[name]!r}, we expect {value!r}"
    bundles = wt.check_bundles(
        action, checker.network, ledger.validators, checker.verify_signature, view.held_bundles(epoch)
    )
    left_out = wt.omitted(action, view.held_before_cutoff(epoch))
    if left_out:
        return f"leaves out the bundle of {', '.join(left_out)}, held here since before the cutoff"
    sets, missing = wt.resolve(bundles, view.report_set)
    if missing:
        return f"missing the report sets of {', '.join(b.signer for b in missing)}: fetch them first"
    weights, digest = wt.compute(context, sets)
    if digest != action.vector_hash or tuple(sorted(weights.items())) != action.weights:
        return f"recomputed vector_hash {digest[:16]}… differs from the proposed {action.vector_hash[:16]}…"
    return None


def propose(ledger: Ledger, view: LocalView, checker: Checker, now_ms: int) -> dict[str, Any]:
    """The value an honest proposer proposes for the next height."""
    height = ledger.height + 1
    working, actions = ledger, []

    def add(action: Action) -> None:
        nonlocal working
        working = working.apply_action(action, height)
        actions.append(action.to_canonical())

    newest = view.newest_validator_set()
    if newest is not None and newest.block > ledger.validators.block and newest != ledger.validators:
        add(ValidatorsAction(newest))
    effective = max(view.chain_head() + checker.rules.activation_delay, ledger.last_effective_block)
    added = 0
    for envelope in view.pending_updates():
        if added >= checker.rules.max_updates:
            break
        action = RegistryAction.of(envelope, effective)
        if working.committed_update(action.update_id) or _check_registry(action, working, view, checker):
            continue
        try:
            add(action)
            added += 1
        except LedgerError:
            continue
    for mechid, epoch in view.epochs_to_propose(now_ms):
        weights_action = _weights_action(working, view, mechid, epoch)
        if weights_action is not None:
            add(weights_action)
            break
    while actions and len(canonical.encode(Entry(height, ledger.head, tuple(actions)).to_canonical())) > (
        checker.rules.max_value_bytes
    ):
        actions.pop()
    return Entry(height, ledger.head, tuple(actions)).to_canonical()


def _weights_action(ledger: Ledger, view: LocalView, mechid: int, epoch: int) -> wt.WeightsAction | None:
    if (mechid, epoch) in ledger.weights:
        return None
    context = view.weights_context(ledger, mechid, epoch)
    if context is None:
        return None
    bundles = [b for b in view.held_bundles(epoch) if b.signer in ledger.validators]
    sets, missing = wt.resolve(bundles, view.report_set)
    have = [b for b in bundles if b not in missing]
    if not ledger.validators.is_quorum(b.signer for b in have):
        return None
    try:
        return wt.build_action(context, have, sets)
    except wt.WeightsError:
        return None
