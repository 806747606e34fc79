"""Byzantine validators for the simulator: an honest machine inside, lies outside.

Each faulty node runs the honest machine to follow the protocol (heights, rounds, who
proposes), then rewrites what leaves it according to its strategy. Crafted messages are
really signed with its own key (or, for forgeries, claim another validator's name and
carry its own signature, which must not verify):

- ``silent``: says nothing, not even its bundle (a crash from the start);
- ``equivocate``: as proposer, sends one value to half the validators and another to
  the rest;
- ``conflicting_votes``: each vote to half the validators, its opposite to the rest;
- ``approve_all``: prevotes and precommits every proposal it sees, at once;
- ``reject_all``: votes nil on everything, proposes invalid values;
- ``forge``: with each vote, a vote in an honest validator's name (bad signature);
- ``replay``: re-sends old messages of any height and round;
- ``censor``: as proposer, leaves an honest validator's bundle out of the weights;
- ``invalid_value``: as proposer, proposes a registry update not signed by the sudo key,
  a vector that does not match its bundles, or an entry that does not extend the log;
- ``stale_proposal``: as proposer, re-proposes a value seen in an earlier round with that
  round as its valid round, though no polka backs it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable
from typing import Any

from platform_cli.consensus.sim_node import SimNode, SimView
from platform_cli.consensus.sim_world import NETWORK
from platform_cli.core import envelope as env
from platform_cli.core.consensus import weights as wt
from platform_cli.core.consensus.actions import RegistryAction
from platform_cli.core.consensus.messages import PRECOMMIT, PREVOTE, PROPOSAL, Proposal, parse

STRATEGIES = (
    "equivocate",
    "conflicting_votes",
    "approve_all",
    "reject_all",
    "forge",
    "replay",
    "censor",
    "invalid_value",
    "stale_proposal",
    "silent",
)
SEEN_KEPT = 256


class CensorView(SimView):
    """Pretends one honest validator's bundle never arrived."""

    censored: str = ""

    def held_bundles(self, epoch: int) -> Iterable[wt.Bundle]:
        return [b for b in super().held_bundles(epoch) if b.signer != self.censored]

    def held_before_cutoff(self, epoch: int) -> Collection[str]:
        return [s for s in super().held_before_cutoff(epoch) if s != self.censored]


class ByzantineNode(SimNode):
    honest = False

    def __init__(self, *args: Any, strategy: str, honest_keys: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.strategy = strategy
        self.honest_keys = honest_keys
        self.seen: list[env.Envelope] = []
        self._seq = 10**12
        if strategy == "censor":
            view = CensorView(self.world, lambda: self.scheduler.now)
            view.censored = min(honest_keys)
            self.view = view

    def report_set_for(self, epoch: int) -> wt.ReportSet:
        if self.strategy == "censor":
            return super().report_set_for(epoch)
        return self.world.skewed_reports(self.key.ss58, epoch, self.rng)

    def publish_bundle(self, epoch: int) -> None:
        if self.strategy != "silent":
            super().publish_bundle(epoch)

    def craft(self, kind: str, body: Any, *, claim: str | None = None) -> env.Envelope:
        self._seq += 1
        sealed = env.seal(
            network=NETWORK,
            kind=kind,
            signer=self.key.ss58,
            scheme=self.key.scheme,
            seq=self._seq,
            ts_ms=self.scheduler.now,
            body=body,
            sign=self.key.sign,
        )
        return sealed if claim is None else dataclasses.replace(sealed, signer=claim)

    def split(self, first: env.Envelope, second: env.Envelope) -> None:
        for peer in self.peers():
            self.network.send(self.index, peer, first if self.rng.random() < 0.5 else second)

    def deliver(self, source: int, payload: Any) -> None:
        if isinstance(payload, env.Envelope) and self.machine is not None:
            self.seen.append(payload)
            del self.seen[:-SEEN_KEPT]
            if self.strategy == "approve_all" and payload.kind == PROPOSAL:
                self._approve(payload)
        super().deliver(source, payload)

    def _approve(self, envelope: env.Envelope) -> None:
        try:
            proposal = parse(envelope.kind, envelope.body)
        except ValueError:
            return
        for kind in (PREVOTE, PRECOMMIT):
            body = {"height": proposal.height, "round": proposal.round, "set": proposal.set_id}
            self.send_all(self.craft(kind, {**body, "value": proposal.value_id}))

    def emit(self, envelope: env.Envelope) -> None:
        strategy = self.strategy
        if strategy == "silent":
            return
        if envelope.signer != self.key.ss58:
            self.send_all(envelope)
            return
        if envelope.kind == PROPOSAL:
            self._propose(envelope)
            return
        if envelope.kind not in (PREVOTE, PRECOMMIT):
            self.send_all(envelope)
            return
        if strategy == "approve_all":
            return
        body = envelope.body
        if strategy == "reject_all":
            self.send_all(self.craft(envelope.kind, {**body, "value": None}))
        elif strategy == "conflicting_votes":
            other = None if body["value"] is not None else "ab" * 32
            self.split(envelope, self.craft(envelope.kind, {**body, "value": other}))
        elif strategy == "forge":
            self.send_all(envelope)
            victim = self.rng.choice(self.honest_keys)
            self.send_all(self.craft(envelope.kind, {**body, "value": "cd" * 32}, claim=victim))
        elif strategy == "replay":
            self.send_all(envelope)
            if self.seen:
                self.send_all(self.rng.choice(self.seen))
        else:
            self.send_all(envelope)

    def _propose(self, envelope: env.Envelope) -> None:
        proposal = parse(envelope.kind, envelope.body)
        if not isinstance(proposal, Proposal):
            return
        body = envelope.body
        if self.strategy == "equivocate":
            self.split(envelope, self.craft(PROPOSAL, {**body, "value": self._other_value(proposal.value)}))
        elif self.strategy in ("invalid_value", "reject_all"):
            self.send_all(self.craft(PROPOSAL, {**body, "value": self._invalid_value(proposal.value)}))
        elif self.strategy == "stale_proposal":
            old = self._older_proposal(proposal)
            if old is None:
                self.send_all(envelope)
            else:
                self.send_all(self.craft(PROPOSAL, {**body, "value": old.value, "valid_round": old.round}))
        else:
            self.send_all(envelope)

    def _other_value(self, value: dict[str, Any]) -> dict[str, Any]:
        if value["actions"]:
            return {**value, "actions": value["actions"][:-1]}
        return self._invalid_value(value)

    def _invalid_value(self, value: dict[str, Any]) -> dict[str, Any]:
        choice = self.rng.randrange(3)
        weights = [i for i, a in enumerate(value["actions"]) if a["type"] == wt.WEIGHTS]
        if choice == 1 and weights:
            actions = list(value["actions"])
            action = dict(actions[weights[0]])
            pairs = [list(p) for p in action["weights"]] or [[0, 0]]
            pairs[0][1] += 1
            action["weights"] = pairs
            actions[weights[0]] = action
            return {**value, "actions": actions}
        if choice == 2:
            return {**value, "prev": "00" * 32}
        head = self.world.chain_head(self.scheduler.now)
        forged = RegistryAction.of(self.world.forged_update, head + 10).to_canonical()
        return {**value, "actions": [*value["actions"], forged]}

    def _older_proposal(self, proposal: Proposal) -> Proposal | None:
        for envelope in reversed(self.seen):
            if envelope.kind != PROPOSAL:
                continue
            try:
                old = parse(envelope.kind, envelope.body)
            except ValueError:
                continue
            if (
                isinstance(old, Proposal)
                and old.height == proposal.height
                and old.round < proposal.round
                and old.value_id != proposal.value_id
            ):
                return old
        return None
