"""What a running validator knows besides the ledger: its ``LocalView`` over the state.

Everything comes from the node's own state: the chain's epoch schedule and the metagraph
snapshots the chain service stores (the snapshot at each epoch's first block, which every
validator reads alike), the registry updates proposed here, and the bundles and report
sets received on the consensus topic. Timing is in chain blocks, read from the newest
sync: an epoch's bundles are fixed ``cutoff_percent`` into the epoch, and a vector is
proposed ``grace_blocks`` later, so honest bundles have spread by then.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from typing import Any

from platform_cli.chain.settings import WeightSettings
from platform_cli.chain.sync import latest_hyperparams
from platform_cli.clock import now_ms
from platform_cli.consensus.settings import ConsensusSettings
from platform_cli.core import canonical
from platform_cli.core import envelope as env
from platform_cli.core.consensus import weights as wt
from platform_cli.core.consensus.ledger import Ledger, challenge_shares
from platform_cli.core.consensus.validators import ValidatorSet, ValidatorSetError
from platform_cli.state.db import State, write_transaction
from platform_cli.state.metagraph import Snapshot, latest_snapshot


class NodeView:
    def __init__(
        self, state: State, netuid: int, settings: ConsensusSettings, weights: WeightSettings
    ) -> None:
        self.state = state
        self.netuid = netuid
        self.settings = settings
        self.weights = weights

    # ------------------------------------------------------------ the chain

    def chain_head(self) -> int:
        row = self.state.execute(
            "SELECT max(block) FROM chain_schedules WHERE netuid = ?", [self.netuid]
        ).fetchone()
        return int(row[0] or 0)

    def _snapshot_at(self, block: int) -> Snapshot | None:
        snapshot = latest_snapshot(self.state, self.netuid, block)
        return snapshot if snapshot is not None and snapshot.block == block else None

    def _set_of(self, snapshot: Snapshot) -> ValidatorSet | None:
        try:
            return ValidatorSet.from_stakes(snapshot.block, snapshot.validators(self.weights.min_stake_rao))
        except ValidatorSetError:
            return None

    def validator_set_at(self, block: int) -> ValidatorSet | None:
        snapshot = self._snapshot_at(block)
        return self._set_of(snapshot) if snapshot is not None else None

    def newest_validator_set(self) -> ValidatorSet | None:
        """The set of the newest epoch's first block: the one snapshot every validator stores."""
        epoch = self._newest_epoch()
        return self.validator_set_at(epoch[1]) if epoch else None

    def _newest_epoch(self) -> tuple[int, int, int] | None:
        row = self.state.execute(
            "SELECT epoch_index, epoch_start, next_epoch_start FROM chain_schedules WHERE netuid = ? "
            "ORDER BY block DESC LIMIT 1",
            [self.netuid],
        ).fetchone()
        return (row[0], row[1], row[2]) if row else None

    def _epoch(self, epoch: int) -> tuple[int, int] | None:
        """(first block, first block of the next) of ``epoch`` as recorded by a sync in it."""
        row = self.state.execute(
            "SELECT epoch_start, next_epoch_start FROM chain_schedules WHERE netuid = ? AND epoch_index = ? "
            "ORDER BY block DESC LIMIT 1",
            [self.netuid, epoch],
        ).fetchone()
        return (row[0], row[1]) if row else None

    def cutoff_block(self, epoch: int) -> int | None:
        known = self._epoch(epoch)
        if known is None:
            return None
        start, next_start = known
        return start + (next_start - start) * self.settings.cutoff_percent // 100

    # ------------------------------------------------------------ registry updates

    def pending_updates(self) -> Iterable[env.Envelope]:
        rows = self.state.execute(
            "SELECT envelope FROM registry_updates WHERE status = 'pending' ORDER BY received_ms, update_id"
        ).fetchall()
        return [env.from_file_json(json.loads(row[0])) for row in rows]

    # ------------------------------------------------------------ weights

    def epochs_to_propose(self, now_ms: int) -> Iterable[tuple[int, int]]:
        newest = self._newest_epoch()
        if newest is None:
            return []
        epoch = newest[0]
        return [
            (self.weights.mechid, e)
            for e in (epoch - 1, epoch)
            if e >= 0 and self.weights_open(self.weights.mechid, e, now_ms)
        ]

    def weights_open(self, mechid: int, epoch: int, now_ms: int) -> bool:
        cutoff = self.cutoff_block(epoch)
        return (
            mechid == self.weights.mechid
            and cutoff is not None
            and self.chain_head() >= cutoff + self.settings.grace_blocks
        )

    def weights_context(self, ledger: Ledger, mechid: int, epoch: int) -> wt.WeightsContext | None:
        known = self._epoch(epoch)
        if known is None or mechid != self.weights.mechid:
            return None
        start = known[0]
        snapshot = self._snapshot_at(start)
        if snapshot is None:
            return None
        burn_uid = None
        if self.weights.burn:
            burn_uid = self.weights.burn_uid
            if burn_uid is None:
                hyper = latest_hyperparams(self.state, self.netuid, start)
                owner = hyper.owner_hotkey if hyper else ""
                burn_uid = next((n.uid for n in snapshot.neurons if n.hotkey == owner), None)
                if burn_uid is None:
                    return None
        return wt.WeightsContext(
            netuid=self.netuid,
            mechid=mechid,
            epoch=epoch,
            snapshot_block=start,
            stakes=snapshot.validators(self.weights.min_stake_rao),
            uids={n.hotkey: n.uid for n in snapshot.neurons},
            challenges=challenge_shares(ledger.registry, start, mechid),
            burn_uid=burn_uid,
        )

    def held_bundles(self, epoch: int) -> Iterable[wt.Bundle]:
        rows = self.state.execute(
            "SELECT envelope FROM consensus_bundles WHERE epoch = ? ORDER BY signer", [epoch]
        ).fetchall()
        return [wt.parse_bundle(env.from_wire(row[0])) for row in rows]

    def held_before_cutoff(self, epoch: int) -> Collection[str]:
        cutoff = self.cutoff_block(epoch)
        if cutoff is None:
            return []
        rows = self.state.execute(
            "SELECT signer FROM consensus_bundles WHERE epoch = ? AND received_block < ? ORDER BY signer",
            [epoch, cutoff],
        ).fetchall()
        return [row[0] for row in rows]

    def report_set(self, root: str) -> wt.ReportSet | None:
        row = self.state.execute("SELECT body FROM consensus_report_sets WHERE root = ?", [root]).fetchone()
        return wt.report_set_from_canonical(canonical.decode(row[0])) if row else None

    # ------------------------------------------------------------ taking in

    def take_bundle(self, envelope: env.Envelope) -> bool:
        """Keep a bundle (admission verified its signature and the signer's role); the
        first per signer and epoch stays. True if it is news."""
        try:
            bundle = wt.parse_bundle(envelope)
        except wt.WeightsError:
            return False
        with write_transaction(self.state):
            cursor = self.state.execute(
                "INSERT OR IGNORE INTO consensus_bundles (epoch, signer, root, envelope, received_ms, received_block) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [bundle.epoch, bundle.signer, bundle.root, envelope.to_wire(), now_ms(), self.chain_head()],
            )
        return cursor.rowcount == 1

    def take_report_set(self, envelope: env.Envelope) -> bool:
        """Keep the report set a validator signed (its own only). True if it is news."""
        try:
            reports = wt.report_set_from_canonical(envelope.body)
        except wt.WeightsError:
            return False
        if reports.validator != envelope.signer:
            return False
        with write_transaction(self.state):
            cursor = self.state.execute(
                "INSERT OR IGNORE INTO consensus_report_sets (root, validator, epoch, body, received_ms) "
                "VALUES (?, ?, ?, ?, ?)",
                [
                    reports.root,
                    reports.validator,
                    reports.epoch,
                    canonical.encode(reports.to_canonical()),
                    now_ms(),
                ],
            )
        return cursor.rowcount == 1

    def has_work(self, ledger: Ledger, now: int) -> bool:
        """Whether anything waits for a decision: a pending update, an open epoch whose
        bundles (with their report sets) form a quorum, a new validator set."""
        committed = {c.update_id for c in ledger.registry.history}
        if any(e.message_id() not in committed for e in self.pending_updates()):
            return True
        for mechid, epoch in self.epochs_to_propose(now):
            if (mechid, epoch) in ledger.weights:
                continue
            ready = [b.signer for b in self.held_bundles(epoch) if self.report_set(b.root) is not None]
            if ledger.validators.is_quorum(s for s in ready if s in ledger.validators):
                return True
        newest = self.newest_validator_set()
        return newest is not None and newest.block > ledger.validators.block and newest != ledger.validators


def own_report_set(state: State, validator: str, epoch: int, counted: Any) -> wt.ReportSet:
    """This validator's report set for ``epoch``: its reports that count, by its own tally."""
    return wt.ReportSet.of(
        validator, epoch, [(r.challenge, r.miner, r.score) for r in counted if r.validator == validator]
    )
