"""Weights behind ``platform weights``: score reports in, vectors computed, submitted, confirmed.

A vector is computed from the epoch's score reports, the metagraph snapshot the epoch
names (taken at the block where the epoch began, so validators that synced at
different blocks compute the same vector), its hyperparameters and the active
challenges of the registry, by the pure ``core.aggregation``; it is stored with its
canonical hash (``records``).

Before anything is sent, the vector is checked against the pallet's rules over the
chain's state (``core.weightrules``): version key, stake, rate limit, permit, counts and
the max weight limit. A refusal found there is recorded as such and sent nowhere; a dry
run reports every refusal the chain would give. Submission is write-ahead: a
``pending`` row first, then the SDK call, then ``submitted`` and, once the chain reads
back exactly the computed u16 row (or our timelocked commit), ``confirmed``; a
chain-side refusal turns the row ``failed`` and raises. A lost answer (deadline or
connection loss while the extrinsic may be in flight) leaves it ``pending``: the
outcome is unknown until the chain shows it. Nothing failed ever reads as submitted.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from platform_cli import scores
from platform_cli.chain import records
from platform_cli.chain import sync as chain_sync
from platform_cli.chain.adapter import ChainClient, Hyperparams, Submission, SubmissionUnknown, WeightsRefused
from platform_cli.chain.records import Vector
from platform_cli.chain.settings import ChainSettings, WeightSettings
from platform_cli.core import aggregation, weightrules
from platform_cli.core.epoch import Schedule
from platform_cli.errors import PlatformError
from platform_cli.identity import KeyStore, Signer
from platform_cli.state import schedules
from platform_cli.state.db import State
from platform_cli.state.metagraph import Snapshot, latest_snapshot

log = logging.getLogger("platform.weights")


def _challenges(state: State, mechid: int, block: int) -> list[aggregation.ChallengeShare]:
    """The challenges of mechanism ``mechid`` active at ``block`` (by the committed history)."""
    from platform_cli.registry import active_at

    shares = [
        aggregation.ChallengeShare(
            record.spec.id, record.spec.scoring.emission_ppm, record.spec.min_validators
        )
        for record in active_at(state, block).values()
        if record.spec.scoring.mechanism == mechid
    ]
    return sorted(shares, key=lambda s: s.challenge)


def _burn_uid(settings: WeightSettings, snapshot: Snapshot, hyper: Hyperparams | None) -> int | None:
    if not settings.burn:
        return None
    if settings.burn_uid is not None:
        return settings.burn_uid
    owner = hyper.owner_hotkey if hyper else ""
    uid = next((n.uid for n in snapshot.neurons if n.hotkey == owner), None)
    if uid is None:
        raise PlatformError(
            f"the subnet owner's hotkey {owner or '(unknown)'} is not in the snapshot at block {snapshot.block}: "
            "set weights.burn_uid or weights.burn = false"
        )
    return uid


def own_hotkey(data_dir: Path, settings: WeightSettings) -> str | None:
    try:
        return KeyStore(data_dir).show(settings.hotkey).ss58
    except PlatformError:
        return None


def build(
    state: State,
    snapshot: Snapshot,
    hyper: Hyperparams | None,
    settings: WeightSettings,
    *,
    epoch: int,
    own: str | None = None,
    reports: list[aggregation.ScoreReport] | None = None,
    agreed: records.Committed | None = None,
) -> Vector:
    """The epoch's vector over ``snapshot``, in memory (nothing is written): the vector
    consensus ``agreed`` on, or aggregated from the epoch's reports (those that count,
    unless ``reports`` are given); padded for the chain's minimum and converted to u16."""
    uids = {n.hotkey: n.uid for n in snapshot.neurons}
    try:
        if agreed is not None:
            units = dict(agreed.weights)
            burn = _burn_uid(settings, snapshot, hyper)
            detail: dict[str, object] = {
                "source": f"consensus height {agreed.height}",
                "vector_hash": agreed.vector_hash,
                "scored": sum(1 for uid, w in units.items() if w > 0 and uid != burn),
            }
        else:
            units, detail = _aggregate(state, snapshot, hyper, settings, epoch, uids, reports)
        max_limit = hyper.max_weight_limit if hyper else aggregation.U16_MAX
        # Pad onto miners first (no permit), lowest uid first, never onto ourselves.
        candidates = [
            n.uid
            for n in sorted(snapshot.neurons, key=lambda n: (n.validator_permit, n.uid))
            if n.hotkey != own
        ]
        weights, padded = aggregation.pad_to_min_weights(
            units, hyper.min_allowed_weights if hyper else 0, candidates, max_limit
        )
        u16 = aggregation.to_u16(weights, max_limit, uids.get(own or ""))
    except aggregation.AggregationError as exc:
        raise PlatformError(f"cannot compute weights for epoch {epoch}: {exc}") from None
    detail["padded"] = padded
    return Vector(snapshot.netuid, settings.mechid, epoch, snapshot.block, weights, u16, detail)


def _aggregate(
    state: State,
    snapshot: Snapshot,
    hyper: Hyperparams | None,
    settings: WeightSettings,
    epoch: int,
    uids: dict[str, int],
    reports: list[aggregation.ScoreReport] | None,
) -> tuple[dict[int, int], dict[str, object]]:
    if reports is None:
        reports = scores.reports_for(state, epoch, first_block=snapshot.block)
    result = aggregation.aggregate(
        reports,
        snapshot.validators(settings.min_stake_rao),
        _challenges(state, settings.mechid, snapshot.block),
        uids,
        _burn_uid(settings, snapshot, hyper),
    )
    for w in result.withheld:
        log.info(
            "weights.withheld epoch=%d challenge=%s miner=%s validators=%d required=%d",
            epoch,
            w.challenge,
            w.miner,
            w.validators,
            w.required,
        )
    detail: dict[str, object] = {
        "withheld": [[w.challenge, w.miner, w.validators, w.required] for w in result.withheld],
        "dropped": list(result.dropped),
        "burned_units": result.burned,
        "scored": len(result.medians),
    }
    return dict(result.weights), detail


def stored_epoch_snapshot(state: State, netuid: int, start: int) -> tuple[Snapshot, Hyperparams] | None:
    snapshot = latest_snapshot(state, netuid, start)
    hyper = chain_sync.latest_hyperparams(state, netuid, start)
    if snapshot is None or snapshot.block != start or hyper is None or hyper.block != start:
        return None
    return snapshot, hyper


def _epoch_start(state: State, netuid: int, epoch: int, newest: Schedule) -> int:
    """Where ``epoch`` began: the newest reading's epoch, or one an earlier sync recorded."""
    if epoch > newest.index:
        raise PlatformError(
            f"epoch {epoch} has not begun: the chain was in epoch {newest.index} at block {newest.block}"
        )
    start = newest.start if epoch == newest.index else schedules.recorded_epoch_start(state, netuid, epoch)
    if start is None:
        raise PlatformError(
            f"no sync during epoch {epoch} recorded where it began: its vector is computed over the "
            "metagraph at that block"
        )
    return start


def compute(
    state: State, netuid: int, settings: WeightSettings, *, epoch: int | None = None, own: str | None = None
) -> Vector:
    """Aggregate the epoch's reports over the snapshot the epoch names and store the vector."""
    scores.ingest(state)
    newest = schedules.latest_schedule(state, netuid)
    if newest is None:
        raise PlatformError(f"no epoch schedule for netuid {netuid}: run `platform chain sync` first")
    epoch = newest.index if epoch is None else epoch
    start = _epoch_start(state, netuid, epoch, newest)
    stored = stored_epoch_snapshot(state, netuid, start)
    if stored is None:
        raise PlatformError(
            f"no metagraph snapshot at block {start}, where epoch {epoch} began: run `platform chain sync` "
            "(its endpoint must still serve that block)"
        )
    vector = build(state, stored[0], stored[1], settings, epoch=epoch, own=own)
    records.store(state, vector)
    return vector


async def submit(
    state: State,
    chain: ChainSettings,
    settings: WeightSettings,
    signer: Signer,
    netuid: int,
    *,
    epoch: int | None,
    dry_run: bool,
) -> tuple[Vector, Submission, str]:
    """Sync, compute, plan and (unless ``dry_run``) submit and confirm; returns the outcome."""
    async with ChainClient(chain) as client:
        return await submit_with(client, state, settings, signer, netuid, epoch=epoch, dry_run=dry_run)


async def submit_with(
    client: ChainClient,
    state: State,
    settings: WeightSettings,
    signer: Signer,
    netuid: int,
    *,
    epoch: int | None = None,
    dry_run: bool = False,
    agreed: records.Committed | None = None,
    source: str = "",
) -> tuple[Vector, Submission, str]:
    """:func:`submit` over an open client (the epoch loop keeps one).

    ``agreed``: the vector consensus committed for the epoch, sent instead of our own;
    ``source`` says in the history where the vector came from.

    A dry run reads the chain and plans in memory: it writes nothing but the score
    reports it takes in from admitted ``evaluation`` messages, and reports every refusal
    the chain would give. Once a submission that may have reached the chain used the
    epoch's vector, later submissions of that epoch send it again.
    """
    scores.ingest(state)
    schedule = await client.schedule(netuid)
    head, head_hyper = await client.metagraph(netuid)
    epoch = schedule.index if epoch is None else epoch
    start = _epoch_start(state, netuid, epoch, schedule)
    fresh = None
    named = stored_epoch_snapshot(state, netuid, start)
    if named is None:
        named = fresh = await client.metagraph(netuid, start)
    if not dry_run:
        chain_sync.record_sync(state, head, head_hyper, schedule, client.settings.network, fresh)
    vector = None
    if records.fixed_by(state, netuid, settings.mechid, epoch) is not None:
        vector = records.load(state, netuid, settings.mechid, epoch)
    if vector is None:
        vector = build(state, named[0], named[1], settings, epoch=epoch, own=signer.ss58, agreed=agreed)
        if not dry_run:
            records.store(state, vector)
    try:
        vector = _for_the_chain_now(state, vector, head, head_hyper, signer.ss58, dry_run=dry_run)
        await _preflight(client, head, head_hyper, vector, settings, signer, dry_run=dry_run)
        plan = await _set_weights(client, vector, settings, signer, dry_run=True)
    except WeightsRefused as exc:
        log.info("weights.refused epoch=%d hotkey=%s error=%s", vector.epoch, signer.ss58, exc)
        if not dry_run:
            records.refused(state, vector, signer.ss58, str(exc))
        raise
    if plan.u16 and plan.u16 != vector.u16:
        raise PlatformError(
            f"the SDK would submit a different u16 vector than computed for epoch {vector.epoch}"
        )
    if dry_run:
        return vector, plan, "planned"
    row_id = records.begin(state, vector, signer.ss58)
    try:
        done = await _set_weights(client, vector, settings, signer, dry_run=False)
    except SubmissionUnknown as exc:
        # The extrinsic may have been included: only the chain can tell, so the row stays
        # pending and the epoch loop settles it from the chain (resolve_pending).
        message = f"outcome unknown, pending until the chain shows it: {exc}"
        log.info("weights.unknown epoch=%d hotkey=%s error=%s", vector.epoch, signer.ss58, exc)
        records.finish(state, row_id, "pending", plan.path, None, message)
        raise PlatformError(
            f"weights for epoch {vector.epoch} may or may not have landed ({exc}); "
            f"submission #{row_id} stays pending until the chain shows it"
        ) from None
    except PlatformError as exc:
        log.info("weights.failed epoch=%d hotkey=%s error=%s", vector.epoch, signer.ss58, exc)
        records.finish(state, row_id, "failed", plan.path, None, f"the chain refused it: {exc}")
        raise
    records.finish(state, row_id, "submitted", done.path, done.block, done.message)
    outcome, message = await _confirm(client, vector, done, signer.ss58, settings.mechid)
    if source:
        message = f"{source}; {message}"
    records.finish(state, row_id, outcome, done.path, done.block, message)
    return vector, replace(done, message=message), outcome


def _for_the_chain_now(
    state: State, vector: Vector, head: Snapshot, hyper: Hyperparams, own: str, *, dry_run: bool
) -> Vector:
    """The vector's u16 row under the limit the chain enforces now (the agreed units stay).

    The units (and the vector's hash) come from the epoch's snapshot; the u16 row is the
    chain-facing step, redone with the head's ``max_weight_limit`` and our uid at the
    head, so a limit changed within the epoch never gets the vector refused.
    """
    own_uid = next((n.uid for n in head.neurons if n.hotkey == own), None)
    try:
        u16 = aggregation.to_u16(vector.weights, hyper.max_weight_limit, own_uid)
    except aggregation.AggregationError as exc:
        raise WeightsRefused(
            f"epoch {vector.epoch}'s weights cannot be sent to netuid {vector.netuid}: {exc}"
        ) from None
    if u16 == vector.u16:
        return vector
    converted = replace(vector, u16=u16)
    if not dry_run:
        records.store(state, converted)
    return converted


async def _set_weights(
    client: ChainClient, vector: Vector, settings: WeightSettings, signer: Signer, *, dry_run: bool
) -> Submission:
    return await client.set_weights(
        vector.netuid,
        vector.u16,
        signer,
        mechid=settings.mechid,
        version_key=settings.version_key,
        dry_run=dry_run,
    )


async def _preflight(
    client: ChainClient,
    head: Snapshot,
    hyper: Hyperparams,
    vector: Vector,
    settings: WeightSettings,
    signer: Signer,
    *,
    dry_run: bool,
) -> None:
    """Every rule of the pallet the vector breaks at the head, as a refusal before sending."""
    view = await client.weights_view(head, hyper, settings.mechid, signer.ss58)
    uids = sorted(vector.u16)
    call = weightrules.WeightsCall(
        vector.netuid, settings.mechid, tuple(uids), tuple(vector.u16[u] for u in uids), settings.version_key
    )
    found = (
        weightrules.timelocked_refusals(view, call)
        if view.commit_reveal
        else weightrules.refusals(view, call)
    )
    if found:
        reasons = "; ".join(map(str, found))
        where = f"epoch {vector.epoch}'s weights on netuid {vector.netuid}"
        if dry_run:
            raise WeightsRefused(f"dry run: the chain would refuse {where}: {reasons}")
        raise WeightsRefused(f"the chain would refuse {where}, so they were not sent: {reasons}")


async def _confirm(
    client: ChainClient, vector: Vector, done: Submission, hotkey: str, mechid: int
) -> tuple[str, str]:
    """Read the chain back: our row equals the computed u16 (or our commit is stored)."""
    if done.path == "commit":
        commits = await client.pending_commits(vector.netuid, mechid, hotkey)
        if any(c["commit_block"] == done.block and c["reveal_round"] == done.reveal_round for c in commits):
            reveal = (
                "the dev chain never reveals timelocked commits (no drand offline)"
                if client.settings.is_dev
                else f"reveals at drand round {done.reveal_round}"
            )
            return "confirmed", f"timelocked commit stored at block {done.block}; {reveal}"
        return "submitted", "commit not found on read-back"
    snapshot_uid = await uid_of(client, vector.netuid, hotkey)
    row, last_update = await client.weights_row(vector.netuid, mechid, snapshot_uid)
    if row == vector.u16 and last_update == done.block:
        return "confirmed", f"chain holds the computed {len(row)}-uid vector, last update {last_update}"
    log.error("weights.mismatch epoch=%d hotkey=%s on_chain=%s", vector.epoch, hotkey, row)
    return "submitted", f"read-back differs: {len(row)} uids on chain, last update {last_update}"


async def uid_of(client: ChainClient, netuid: int, hotkey: str) -> int:
    uid = await client.call("uid lookup", lambda c: c.neurons.uid(hotkey, netuid))
    if uid is None:
        raise PlatformError(f"hotkey {hotkey} is no longer registered on netuid {netuid}")
    return int(uid)
