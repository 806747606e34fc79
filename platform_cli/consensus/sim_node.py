"""A simulated validator: the real machine, application, guard and ledger over memory.

An honest node is exactly what a real validator runs (``Machine``, ``LedgerApplication``,
``GuardedSigner``), with :class:`SimView` standing in for its chain view, gossip inbox and
report store, and in-memory logs standing in for SQLite. The logs and the view survive a
simulated crash (they are the "disk"); the machine does not.

Besides signed consensus envelopes, three payloads travel between nodes: a bundle with
its report set (the report set stands in for a sync fetch by root), a batch of commits
(catch-up), and a request for commits.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from platform_cli.consensus import validator
from platform_cli.consensus.application import LedgerApplication, MemoryCommitStore
from platform_cli.consensus.signing import GuardedSigner, MemoryVoteLog
from platform_cli.consensus.sim_network import Network, Scheduler
from platform_cli.consensus.sim_world import NETWORK, WORK_START_MS, SimKey, World
from platform_cli.core import canonical
from platform_cli.core import envelope as env
from platform_cli.core.consensus import weights as wt
from platform_cli.core.consensus.evidence import Evidence
from platform_cli.core.consensus.ledger import Ledger
from platform_cli.core.consensus.machine import Machine
from platform_cli.core.consensus.messages import BUNDLE, ROUND_KINDS, Slot, parse
from platform_cli.core.consensus.params import Timeouts
from platform_cli.core.consensus.ports import (
    Broadcast,
    CatchUp,
    Commit,
    Decided,
    Misbehaviour,
    Output,
    PeerBehind,
    Refused,
    ValueRejected,
)
from platform_cli.core.consensus.validators import ValidatorSet
from platform_cli.core.consensus.validity import Checker

SIM_TIMEOUTS = Timeouts(
    propose_ms=200,
    prevote_ms=100,
    precommit_ms=100,
    delta_ms=100,
    rebroadcast_ms=600,
    idle_poll_ms=100,
    catchup_ms=300,
)
COMMITS_PER_BATCH = 16
RELAY_EVERY_MS = 300


@dataclass(frozen=True)
class BundleMessage:
    envelope: env.Envelope
    report_set: wt.ReportSet


@dataclass(frozen=True)
class Commits:
    commits: tuple[Commit, ...]


@dataclass(frozen=True)
class CommitRequest:
    from_height: int


@dataclass(frozen=True)
class BundleRequest:
    """Send me your bundles (with report sets) of these epochs: the stand-in for sync ``get``."""

    epochs: tuple[int, ...]


@dataclass
class Trace:
    """What the invariants look at afterwards: collected as the run goes."""

    honest: frozenset[str]
    signed: dict[tuple[str, Slot], bytes] = field(default_factory=dict)
    _recorded: set[bytes] = field(default_factory=set)
    double_votes: list[tuple[str, Slot]] = field(default_factory=list)
    decisions: dict[int, dict[int, tuple[str, int, int]]] = field(default_factory=dict)
    evidence: list[Evidence] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)
    rejections: int = 0
    rounds_at: dict[int, dict[int, int]] = field(default_factory=dict)
    """height -> node -> highest round entered (updated as nodes act)."""

    def record_signed(self, envelope: env.Envelope) -> None:
        if (
            envelope.signer not in self.honest
            or envelope.kind not in ROUND_KINDS
            or envelope.signature in self._recorded
        ):
            return
        self._recorded.add(envelope.signature)
        key = (envelope.signer, parse(envelope.kind, envelope.body).slot)
        body = canonical.encode(envelope.body)
        known = self.signed.setdefault(key, body)
        if known != body:
            self.double_votes.append(key)


class SimView:
    """The local view of one node: its registry inbox, bundles, report sets, clock."""

    def __init__(self, world: World, clock: Callable[[], int]) -> None:
        self.world = world
        self.clock = clock
        self.pool: list[env.Envelope] = []
        self.bundles: dict[int, dict[str, tuple[wt.Bundle, int]]] = {}
        self.report_sets: dict[str, wt.ReportSet] = {}

    def take_bundle(self, message: BundleMessage) -> bool:
        """Keep a verified bundle (the first per signer and epoch); True if it is news."""
        envelope = message.envelope
        if envelope.network != NETWORK or envelope.signer not in self.world.validators:
            return False
        try:
            bundle = wt.parse_bundle(envelope)
        except wt.WeightsError:
            return False
        reports = message.report_set
        if reports.root != bundle.root or reports.validator != bundle.signer or reports.epoch != bundle.epoch:
            return False
        held = self.bundles.setdefault(bundle.epoch, {})
        if bundle.signer in held or not self.world.verifier(
            envelope.scheme, envelope.signer, envelope.signing_payload(), envelope.signature
        ):
            return False
        held[bundle.signer] = (bundle, self.clock())
        self.report_sets[bundle.root] = reports
        return True

    def chain_head(self) -> int:
        return self.world.chain_head(self.clock())

    def validator_set_at(self, block: int) -> ValidatorSet | None:
        return self.world.validators if block == self.world.validators.block else None

    def newest_validator_set(self) -> ValidatorSet | None:
        return self.world.validators

    def pending_updates(self) -> Iterable[env.Envelope]:
        return list(self.pool)

    def epochs_to_propose(self, now_ms: int) -> Iterable[tuple[int, int]]:
        return [(0, e.number) for e in self.world.epochs if now_ms >= e.open_ms]

    def weights_open(self, mechid: int, epoch: int, now_ms: int) -> bool:
        known = self.world.epoch(epoch)
        return mechid == 0 and known is not None and now_ms >= known.open_ms

    def weights_context(self, ledger: Ledger, mechid: int, epoch: int) -> wt.WeightsContext | None:
        return self.world.weights_context(ledger, epoch) if mechid == 0 else None

    def held_bundles(self, epoch: int) -> Iterable[wt.Bundle]:
        return [bundle for _, (bundle, _) in sorted(self.bundles.get(epoch, {}).items())]

    def held_before_cutoff(self, epoch: int) -> Collection[str]:
        known = self.world.epoch(epoch)
        if known is None:
            return []
        return sorted(s for s, (_, at) in self.bundles.get(epoch, {}).items() if at < known.cutoff_ms)

    def report_set(self, root: str) -> wt.ReportSet | None:
        return self.report_sets.get(root)


class SimNode:
    honest = True

    def __init__(
        self,
        index: int,
        key: SimKey,
        world: World,
        scheduler: Scheduler,
        network: Network,
        trace: Trace,
        *,
        amnesia: bool = False,
    ) -> None:
        self.index = index
        self.key = key
        self.world = world
        self.scheduler = scheduler
        self.network = network
        self.trace = trace
        self.amnesia = amnesia
        self.rng = random.Random(world.seed * 1009 + index)
        self.votes = MemoryVoteLog()
        self.store = MemoryCommitStore()
        self.view = SimView(world, lambda: scheduler.now)
        self.machine: Machine | None = None
        self.app: LedgerApplication | None = None
        self._generation = 0
        self._armed: int | None = None
        self._relayed_at = -(10**9)

    @property
    def up(self) -> bool:
        return self.machine is not None

    @property
    def height(self) -> int:
        return len(self.store.stored)

    def peers(self) -> list[int]:
        return [i for i in range(len(self.world.keys)) if i != self.index]

    def boot(self) -> None:
        now = self.scheduler.now
        if self.amnesia:
            self.votes = MemoryVoteLog()
        self.machine, self.app = validator.start(
            genesis=self.world.genesis,
            store=self.store,
            votes=self.votes,
            key=self.key,
            view=self.view,
            checker=Checker(NETWORK, self.world.verifier),
            wants=lambda current, now: current.height < self.world.heights and now >= WORK_START_MS,
            timeouts=SIM_TIMEOUTS,
            now_ms=now,
        )
        self.handle(self.machine.start(now))

    def crash(self) -> None:
        self.machine = None
        self.app = None
        self._generation += 1
        self._armed = None

    # --- inputs -------------------------------------------------------------------

    def deliver(self, source: int, payload: Any) -> None:
        if self.machine is None:
            if isinstance(payload, BundleMessage):
                self.view.take_bundle(payload)
            return
        now = self.scheduler.now
        outputs: list[Output] = []
        if isinstance(payload, env.Envelope):
            outputs = self.machine.receive(payload, now)
        elif isinstance(payload, BundleMessage):
            if self.view.take_bundle(payload):
                outputs = self.machine.wake(now)
        elif isinstance(payload, Commits):
            for commit in payload.commits:
                outputs += self.machine.receive_commit(commit, now)
        elif isinstance(payload, CommitRequest):
            self._send_commits(source, payload.from_height)
        elif isinstance(payload, BundleRequest):
            for epoch in payload.epochs:
                for bundle, _ in self.view.bundles.get(epoch, {}).values():
                    report_set = self.view.report_sets[bundle.root]
                    self.network.send(self.index, source, BundleMessage(bundle.envelope, report_set))
        self.handle(outputs)

    def add_update(self, envelope: env.Envelope) -> None:
        self.view.pool.append(envelope)
        if self.machine is not None:
            self.handle(self.machine.wake(self.scheduler.now))

    def publish_bundle(self, epoch: int) -> None:
        reports = self.report_set_for(epoch)
        envelope = GuardedSigner(self.votes, self.key, NETWORK).sign_once(
            f"bundle:{epoch}", BUNDLE, wt.bundle_body(reports), self.scheduler.now
        )
        if envelope is None:
            return
        message = BundleMessage(envelope, reports)
        self.view.take_bundle(message)
        self.send_all(message)
        if self.machine is not None:
            self.handle(self.machine.wake(self.scheduler.now))

    def report_set_for(self, epoch: int) -> wt.ReportSet:
        return self.world.honest_reports(self.key.ss58, epoch)

    def _fire(self, generation: int) -> None:
        if self.machine is None or generation != self._generation:
            return
        self._armed = None
        self.handle(self.machine.on_timer(self.scheduler.now))

    # --- outputs ------------------------------------------------------------------

    def send_all(self, payload: Any) -> None:
        for peer in self.peers():
            self.network.send(self.index, peer, payload)

    def emit(self, envelope: env.Envelope) -> None:
        self.trace.record_signed(envelope)
        self.send_all(envelope)

    def handle(self, outputs: list[Output]) -> None:
        now = self.scheduler.now
        for out in outputs:
            if isinstance(out, Broadcast):
                self.emit(out.envelope)
            elif isinstance(out, Decided):
                commit = out.commit
                decided = self.trace.decisions.setdefault(self.index, {})
                decided.setdefault(
                    commit.height, (commit.certificate.value_id, commit.certificate.round, now)
                )
            elif isinstance(out, Misbehaviour):
                self.trace.evidence.append(out.evidence)
            elif isinstance(out, CatchUp):
                self.network.send(self.index, self.rng.choice(self.peers()), CommitRequest(out.height))
            elif isinstance(out, PeerBehind):
                self._send_commits(self.world.index_of(out.signer), out.height)
            elif isinstance(out, Refused):
                self.trace.refused[out.reason] += 1
            elif isinstance(out, ValueRejected):
                self.trace.rejections += 1
                self._fetch_and_relay_bundles(out, now)
        if self.machine is not None:
            rounds = self.trace.rounds_at.setdefault(self.machine.height, {})
            rounds[self.index] = max(rounds.get(self.index, 0), self.machine.round)
            deadline = self.machine.next_deadline()
            if deadline != self._armed:
                self._armed = deadline
                self._generation += 1
                generation = self._generation
                self.scheduler.at(deadline, lambda: self._fire(generation))

    def _send_commits(self, peer: int, from_height: int) -> None:
        batch = tuple(self.store.commits(from_height))[:COMMITS_PER_BATCH]
        if batch:
            self.network.send(self.index, peer, Commits(batch))

    def _fetch_and_relay_bundles(self, rejected: ValueRejected, now: int) -> None:
        """A value was refused: ask its proposer for the bundles it named (data we may lack)
        and pass on the bundles we hold (that it may have left out), for undecided epochs."""
        if now - self._relayed_at < RELAY_EVERY_MS or self.app is None or self.machine is None:
            return
        self._relayed_at = now
        decided = {epoch for _, epoch in self.app.ledger.weights}
        epochs = tuple(e.number for e in self.world.epochs if e.start_ms <= now and e.number not in decided)
        if not epochs:
            return
        proposer = self.machine.validators.proposer(rejected.height, rejected.round)
        if proposer != self.key.ss58:
            self.network.send(self.index, self.world.index_of(proposer), BundleRequest(epochs))
        for epoch in epochs:
            for bundle, _ in self.view.bundles.get(epoch, {}).values():
                self.send_all(BundleMessage(bundle.envelope, self.view.report_sets[bundle.root]))
