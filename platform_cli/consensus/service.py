"""Consensus on a running node: the machine driven over the P2P node.

The pure machine (``core/consensus/machine.py``) decides; this adapter feeds it and acts
on what it says:

- *in*: every message the node's admission stores on the consensus topic reaches the
  service at once (an admission listener, no polling): proposals and votes go to the
  machine; bundles and report sets into the local view (then ``wake``, as data a
  validation lacked may have arrived); evidence is verified and kept. At start the
  consensus messages of the last minutes are read back from the inbox.
- *out*: ``Broadcast`` is gossiped on the consensus topic (the signing guard stored it
  first); ``Decided`` is applied to the node's state: registry updates through
  ``registry.commit_update`` (every validator switches at the entry's effective block)
  and weight vectors into ``consensus_vectors``, which the weights loop submits;
  ``CatchUp`` fetches committed entries through sync's ``commits`` request from a
  validator peer (the machine verifies each certificate before applying it);
  ``Misbehaviour`` is stored and gossiped as evidence.
- *timers*: the machine's deadline, and a tick that fixes this validator's bundle once an
  epoch passes its cutoff and asks the machine whether there is work.

Everything touching SQLite runs on the trio thread with the service's own connection;
the work per message is small (a signature check and a few indexed statements).
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import trio

from platform_cli import registry, scores
from platform_cli.chain.settings import ChainSettings, WeightSettings
from platform_cli.clock import now_ms
from platform_cli.config import Config
from platform_cli.consensus import validator
from platform_cli.consensus.settings import ConsensusSettings
from platform_cli.consensus.signing import GuardedSigner
from platform_cli.consensus.store import SqliteCommitStore, SqliteVoteLog, store_evidence
from platform_cli.consensus.view import NodeView, own_report_set
from platform_cli.core import canonical, gossip
from platform_cli.core import envelope as env
from platform_cli.core.consensus import certificate as certs
from platform_cli.core.consensus import evidence as ev
from platform_cli.core.consensus import weights as wt
from platform_cli.core.consensus.actions import RegistryAction, parse_action
from platform_cli.core.consensus.ledger import Genesis
from platform_cli.core.consensus.messages import BUNDLE, EVIDENCE, REPORTS, ROUND_KINDS
from platform_cli.core.consensus.ports import (
    Broadcast,
    CatchUp,
    Commit,
    Decided,
    Misbehaviour,
    Output,
    Refused,
    ValueRejected,
)
from platform_cli.core.consensus.validators import ValidatorSet, ValidatorSetError
from platform_cli.core.consensus.validity import Checker
from platform_cli.core.registry import UPDATE_KIND, RegistryState
from platform_cli.errors import PlatformError
from platform_cli.identity import Signer, verify_signature
from platform_cli.p2p import outgoing
from platform_cli.state.db import State, open_state, write_transaction
from platform_cli.state.metagraph import latest_snapshot

log = logging.getLogger("platform.consensus")

TICK_S = 0.25
BACKLOG_MS = 10 * 60 * 1000
INBOX_CAPACITY = 8192
CATCHUP_EVERY_S = 1.0


class ConsensusService:
    name = "consensus"

    def __init__(
        self,
        data_dir: Path,
        config: Config,
        signer: Signer,
        p2p: Any,
        settings: ConsensusSettings,
        weights: WeightSettings,
        chain: ChainSettings,
        *,
        byzantine: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.byzantine = byzantine
        self.config = config
        self.network = config.network
        self.signer = signer
        self.p2p = p2p
        self.settings = settings
        self.weights = weights
        self.chain = chain
        self._send, self._receive = trio.open_memory_channel[tuple[str, env.Envelope]](INBOX_CAPACITY)
        self._listening = False
        self._outgoing: list[tuple[str, bytes]] = []
        self._catchup_from: int | None = None
        self._suspended_under: str | None = None
        """The validator set under which equivocators were suspended."""
        self.dropped = 0

    # ------------------------------------------------------------ lifecycle

    def _listen(self, topic: str, envelope: env.Envelope) -> None:
        if envelope.kind not in gossip.TOPICS["consensus"].kinds and envelope.kind != UPDATE_KIND:
            return
        try:
            self._send.send_nowait((topic, envelope))
        except trio.WouldBlock:
            self.dropped += 1  # rebroadcasts and sync bring it again

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        if not self._listening:
            self.p2p.listeners.append(self._listen)
            if self.p2p.node is not None:
                self.p2p.node.admission.listeners.append(self._listen)
            self._listening = True
        state = open_state(self.data_dir)
        try:
            genesis = await self._genesis(state)
            self.view = NodeView(state, self.network.netuid, self.settings, self.weights)
            self.state = state
            self.store = SqliteCommitStore(state, genesis.id)
            self.votes = SqliteVoteLog(state, self.signer.ss58)
            self.machine, self.app = validator.start(
                genesis=genesis,
                store=self.store,
                votes=self.votes,
                key=self.signer,
                view=self.view,
                checker=Checker(self.network.network, verify_signature),
                wants=self.view.has_work,
                timeouts=self.settings.timeouts,
                now_ms=now_ms(),
            )
            self._reconcile()
            self._handle(self.machine.start(now_ms()))
            self._backlog()
            log.info(
                "consensus.started height=%d genesis=%s validators=%d",
                self.machine.height,
                genesis.id[:16],
                len(self.machine.validators.members),
            )
            task_status.started()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._catchup_loop)
                await self._run()
        finally:
            state.close()

    async def _genesis(self, state: State) -> Genesis:
        """The first validator set: the snapshot at ``genesis_block`` (read from the chain
        if this node did not store it)."""
        block = self.settings.genesis_block
        assert block is not None
        snapshot = latest_snapshot(state, self.network.netuid, block)
        if snapshot is None or snapshot.block != block:
            snapshot = await trio.to_thread.run_sync(self._read_snapshot, block)
        try:
            validators = ValidatorSet.from_stakes(block, snapshot.validators(self.weights.min_stake_rao))
        except ValidatorSetError as exc:
            raise PlatformError(f"consensus.genesis_block {block}: {exc}") from None
        return Genesis(self.network.network, self.network.sudo, validators, RegistryState())

    def _read_snapshot(self, block: int) -> Any:
        from platform_cli.chain.adapter import ChainClient

        async def read() -> Any:
            async with ChainClient(self.chain) as client:
                snapshot, _ = await client.metagraph(self.network.netuid, block)
                return snapshot

        return asyncio.run(read())

    def _backlog(self) -> None:
        """Consensus messages stored while this service was down (or before it started)."""
        from platform_cli.p2p.store import read_inbox

        since = now_ms() - BACKLOG_MS
        messages = read_inbox(
            self.state, after_row=0, kinds=sorted(gossip.TOPICS["consensus"].kinds), limit=20_000
        )
        for message in messages:
            if message.envelope.ts_ms >= since or message.envelope.kind in (BUNDLE, REPORTS):
                self._take(message.envelope)

    async def _run(self) -> None:
        next_tick = trio.current_time()
        while True:
            deadline = self.machine.next_deadline()
            wait_s = max(0.0, min((deadline - now_ms()) / 1000, next_tick - trio.current_time()))
            with trio.move_on_after(wait_s):
                _, envelope = await self._receive.receive()
                self._take(envelope)
                while True:  # drain what else arrived before acting
                    try:
                        _, envelope = self._receive.receive_nowait()
                    except trio.WouldBlock:
                        break
                    self._take(envelope)
            now = now_ms()
            if now >= self.machine.next_deadline():
                self._handle(self.machine.on_timer(now))
            if trio.current_time() >= next_tick:
                next_tick = trio.current_time() + TICK_S
                self._lift_on_new_set()
                self._fix_bundles()
                self._handle(self.machine.wake(now_ms()))
            await self._flush()

    # ------------------------------------------------------------ in

    def _take(self, envelope: env.Envelope) -> None:
        now = now_ms()
        if envelope.kind in ROUND_KINDS:
            self._handle(self.machine.receive(envelope, now))
        elif envelope.kind == BUNDLE:
            if self.view.take_bundle(envelope):
                self._handle(self.machine.wake(now))
        elif envelope.kind == REPORTS:
            if self.view.take_report_set(envelope):
                self._handle(self.machine.wake(now))
        elif envelope.kind == EVIDENCE:
            self._take_evidence(envelope)
        elif envelope.kind == UPDATE_KIND:
            self._take_update(envelope)

    def _take_update(self, envelope: env.Envelope) -> None:
        """A sudo-signed registry update gossiped by whoever proposed it: pending here too,
        so that every proposer includes it (its module comes from the DHT when needed)."""
        if self.state.execute(
            "SELECT 1 FROM registry_updates WHERE update_id = ?", [envelope.message_id()]
        ).fetchone():
            return
        try:
            registry.propose(
                self.state, self.config, registry.SignedUpdate(envelope, None), module_optional=True
            )
        except PlatformError as exc:
            log.info("consensus.update_not_pending update=%s reason=%s", envelope.message_id()[:16], exc)
            return
        self._handle(self.machine.wake(now_ms()))

    def _take_evidence(self, envelope: env.Envelope) -> None:
        try:
            evidence = ev.decode(canonical.encode(envelope.body))
            ev.verify(evidence, verify_signature, validators=self.machine.validators)
        except (ev.EvidenceError, ValueError) as exc:
            log.info("consensus.evidence_refused relayer=%s reason=%s", envelope.signer, exc)
            return
        self._suspend(evidence.signer)
        if store_evidence(self.state, evidence):
            log.warning(
                "consensus.evidence signer=%s slot=%s (relayed by %s)",
                evidence.signer,
                evidence.slot,
                envelope.signer,
            )

    # ------------------------------------------------------------ out

    def _publish(self, kind: str, wire: bytes) -> None:
        self._outgoing.append((kind, wire))

    async def _flush(self) -> None:
        outgoing_now, self._outgoing = self._outgoing, []
        node = self.p2p.node
        for kind, wire in outgoing_now:
            if node is None:
                continue
            try:
                await node.publish_envelope("consensus", wire)
            except Exception as exc:  # no peers yet, a closing host: rebroadcast and sync cover it
                log.info("consensus.publish_failed kind=%s error=%s", kind, exc)

    def _handle(self, outputs: list[Output]) -> None:
        for out in outputs:
            if isinstance(out, Broadcast):
                self._publish(out.envelope.kind, out.envelope.to_wire())
                if self.byzantine:
                    self._equivocate(out.envelope)
            elif isinstance(out, Decided):
                self._apply(out.commit)
            elif isinstance(out, Misbehaviour):
                self._evidence(out.evidence)
            elif isinstance(out, CatchUp):
                self._catchup_from = out.height
            elif isinstance(out, Refused):
                log.debug(
                    "consensus.refused reason=%s signer=%s detail=%s", out.reason, out.signer, out.detail
                )
            elif isinstance(out, ValueRejected):
                log.info(
                    "consensus.rejected height=%d round=%d value=%s reason=%s",
                    out.height,
                    out.round,
                    out.value_id[:16],
                    out.reason,
                )

    def _equivocate(self, envelope: env.Envelope) -> None:
        """Byzantine on purpose (devnet only): a second, conflicting vote at the same slot."""
        from platform_cli.node.byzantine import conflicting_vote
        from platform_cli.state.sequences import next_own_seq

        now = now_ms()
        seq = next_own_seq(self.state, self.signer.ss58, floor=now)
        conflict = conflicting_vote(envelope, self.signer, seq, now)
        if conflict is not None:
            self._publish(conflict.kind, conflict.to_wire())

    def _suspend(self, signer: str) -> None:
        """Gossip refuses the equivocator's consensus messages until the next validator set.

        Never our own key: another process signing with it must be stopped by the operator,
        and this node must still get the evidence out."""
        if signer == self.signer.ss58:
            log.error(
                "consensus.own_key_equivocates: another process signs with this validator's key %s", signer
            )
            return
        self._suspended_under = self.machine.validators.set_id
        node = self.p2p.node
        if node is not None:
            node.admission.suspend(signer)

    def _lift_on_new_set(self) -> None:
        node = self.p2p.node
        if self._suspended_under is not None and self.machine.validators.set_id != self._suspended_under:
            self._suspended_under = None
            if node is not None:
                node.admission.lift_suspensions()

    def _evidence(self, evidence: ev.Evidence) -> None:
        self._suspend(evidence.signer)
        if not store_evidence(self.state, evidence):
            return
        log.warning("consensus.equivocation signer=%s slot=%s", evidence.signer, evidence.slot)
        envelope = outgoing.seal_for(
            self.state, self.network.network, self.signer, EVIDENCE, evidence.to_canonical()
        )
        self._publish(EVIDENCE, envelope.to_wire())

    def _apply(self, commit: Commit) -> None:
        """The decision is in the log (the application stored it): apply it to the state."""
        height = commit.height
        for raw in commit.value.get("actions", []):
            action = parse_action(raw)
            if isinstance(action, RegistryAction):
                self._apply_registry(action)
            elif isinstance(action, wt.WeightsAction):
                self._apply_weights(action, height)
        log.info(
            "consensus.committed height=%d round=%d value=%s actions=%d",
            height,
            commit.certificate.round,
            commit.certificate.value_id[:16],
            len(commit.value.get("actions", [])),
        )

    def _apply_registry(self, action: RegistryAction) -> None:
        update_id = action.update_id
        row = self.state.execute(
            "SELECT status FROM registry_updates WHERE update_id = ?", [update_id]
        ).fetchone()
        if row is not None and row[0] != "pending":
            return  # applied before a restart
        if row is None:
            update = registry.SignedUpdate(action.envelope, None)
            try:
                registry.propose(self.state, self.config, update, module_optional=True)
            except PlatformError as exc:
                log.error("consensus.registry_not_recorded update=%s error=%s", update_id[:16], exc)
                return
            log.info(
                "consensus.registry_recorded update=%s (its module is fetched from the DHT)", update_id[:16]
            )
        registry.commit_update(self.state, self.config, update_id, effective_block=action.effective_block)

    def _apply_weights(self, action: wt.WeightsAction, height: int) -> None:
        with write_transaction(self.state):
            self.state.execute(
                "INSERT OR IGNORE INTO consensus_vectors (netuid, mechid, epoch, height, vector_hash, snapshot_block, "
                "weights, committed_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    self.network.netuid,
                    action.mechid,
                    action.epoch,
                    height,
                    action.vector_hash,
                    action.inputs["snapshot_block"],
                    json.dumps([list(w) for w in action.weights]),
                    now_ms(),
                ],
            )

    def _reconcile(self) -> None:
        """Apply committed entries the state missed (a crash between log and state)."""
        for commit in self.store.commits():
            self._apply(commit)

    # ------------------------------------------------------------ bundles

    def _fix_bundles(self) -> None:
        """Past an epoch's cutoff, sign this validator's bundle once and gossip it with its
        report set (the reports of ours that count for the epoch)."""
        newest = self.view._newest_epoch()
        if newest is None or self.signer.ss58 not in self.machine.validators:
            return
        head = self.view.chain_head()
        for epoch in (newest[0] - 1, newest[0]):
            cutoff = self.view.cutoff_block(epoch)
            if epoch < 0 or cutoff is None or head < cutoff:
                continue
            if self.state.execute(
                "SELECT 1 FROM consensus_signed_once WHERE signer = ? AND key = ?",
                [self.signer.ss58, f"bundle:{epoch}"],
            ).fetchone():
                continue
            try:
                tally = scores.tally(self.state, epoch, netuid=self.network.netuid)
            except PlatformError as exc:
                log.info("consensus.no_bundle epoch=%d reason=%s", epoch, exc)
                continue
            reports = own_report_set(self.state, self.signer.ss58, epoch, tally.counted)
            signer = GuardedSigner(self.votes, self.signer, self.network.network)
            bundle = signer.sign_once(f"bundle:{epoch}", BUNDLE, wt.bundle_body(reports), now_ms())
            if bundle is None:
                continue
            report_envelope = outgoing.seal_for(
                self.state, self.network.network, self.signer, REPORTS, reports.to_canonical()
            )
            self.view.take_report_set(report_envelope)
            self.view.take_bundle(bundle)
            self._publish(REPORTS, report_envelope.to_wire())
            self._publish(BUNDLE, bundle.to_wire())
            log.info(
                "consensus.bundle epoch=%d reports=%d root=%s", epoch, len(reports.entries), reports.root[:16]
            )

    # ------------------------------------------------------------ catching up

    async def _catchup_loop(self) -> None:
        while True:
            await trio.sleep(CATCHUP_EVERY_S)
            height = self._catchup_from
            node = self.p2p.node
            if height is None or node is None:
                continue
            self._catchup_from = None
            for peer in node.connected_validator_peers():
                try:
                    found = await node.fetch_commits(peer, height)
                except Exception as exc:  # an unreachable peer: try the next
                    log.info("consensus.catchup_failed peer=%s error=%s", peer, exc)
                    continue
                applied = 0
                for value, certificate in found:
                    try:
                        commit = Commit(canonical.decode(value), certs.decode(certificate))
                    except (ValueError, canonical.CanonicalError, certs.CertificateError) as exc:
                        log.info("consensus.catchup_bad peer=%s error=%s", peer, exc)
                        break
                    before = self.machine.height
                    self._handle(self.machine.receive_commit(commit, now_ms()))
                    applied += self.machine.height > before
                if applied:
                    log.info("consensus.caught_up peer=%s from=%d applied=%d", peer, height, applied)
                    break
