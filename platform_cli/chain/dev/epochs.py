"""The pallet's epoch scheduler and validator permits, transcribed (pure: blocks in, state out).

Source: opentensor/subtensor at commit 14bc6f9f964b9cc362e9635dd110a487fa5d15a0,
``pallets/subtensor/src/coinbase/run_coinbase.rs`` (``should_run_epoch``,
``drain_pending``, ``get_next_epoch_start_block``, ``blocks_until_next_auto_epoch``),
``coinbase/tempo_control.rs`` (``do_trigger_epoch``), ``utils/misc.rs``
(``apply_tempo_with_cycle_reset``, ``is_in_admin_freeze_window``),
``subnets/subnet.rs`` (``init_new_network``), ``epoch/run_epoch.rs`` and
``epoch/math.rs`` (``is_topk_nonzero``).

In ``on_initialize`` of every block ``b`` the pallet adds one to ``BlocksSinceLastStep``
and runs the subnet's epoch when ``should_run_epoch(b)``: an owner-triggered
``PendingEpochAt`` has come, or ``BlocksSinceLastStep`` passed ``MAX_TEMPO``, or
``tempo`` blocks passed since ``LastEpochBlock``. Running it sets ``LastEpochBlock = b``,
clears ``PendingEpochAt``, adds one to ``SubnetEpochIndex``, resets
``BlocksSinceLastStep`` and assigns validator permits from the stakes. A tempo change
resets ``LastEpochBlock`` to the current block and keeps the index. Extrinsics of block
``b`` run after its ``on_initialize``: they see the epoch that ran at ``b``.

The dev chain keeps this state as an anchor (the state after some block ``A``) and
rolls it forward to any later block in closed form: without a write in between, the
epochs fire at fixed intervals. Left out: the per-block cap on epochs
(``MaxEpochsPerBlock``, which defers a subnet when many fire in one block) and epochs
skipped for inconsistent input state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

MAX_TEMPO = 50_400  # lib.rs: BlocksSinceLastStep above this forces an epoch
ADMIN_FREEZE_WINDOW = 10  # lib.rs: DefaultAdminFreezeWindow


@dataclass(frozen=True)
class EpochState:
    """A subnet's scheduler state after ``block``'s ``on_initialize``."""

    block: int
    tempo: int
    last_epoch_block: int
    pending_epoch_at: int  # 0: no triggered epoch
    epoch_index: int
    last_step_block: int  # the block of the last epoch run: BlocksSinceLastStep = block - this

    @property
    def blocks_since_last_step(self) -> int:
        return self.block - self.last_step_block

    def should_run(self, block: int) -> bool:
        """``should_run_epoch`` at ``block`` with this state."""
        if self.tempo == 0:
            return False
        if self.pending_epoch_at > 0 and block >= self.pending_epoch_at:
            return True
        if block - self.last_step_block > MAX_TEMPO:
            return True
        return max(0, block - self.last_epoch_block) >= self.tempo

    def next_run(self) -> int | None:
        """The first block after ``block`` whose ``on_initialize`` runs an epoch."""
        if self.tempo == 0:
            return None
        candidates = [self.last_epoch_block + self.tempo, self.last_step_block + MAX_TEMPO + 1]
        if self.pending_epoch_at > 0:
            candidates.append(self.pending_epoch_at)
        return max(self.block + 1, min(candidates))

    def next_epoch_start_block(self) -> int | None:
        """``get_next_epoch_start_block``: ``LastEpochBlock + tempo``, or the triggered block if earlier."""
        if self.tempo == 0:
            return None
        auto = self.last_epoch_block + self.tempo
        return min(auto, self.pending_epoch_at) if self.pending_epoch_at > 0 else auto

    def blocks_until_next_auto_epoch(self) -> int:
        return max(0, self.last_epoch_block + self.tempo - self.block)

    def lookahead_index(self) -> int:
        """``current_epoch_with_lookahead`` for an extrinsic applied in ``block``."""
        return self.epoch_index + (1 if self.should_run(self.block) else 0)

    def in_admin_freeze_window(self, window: int) -> bool:
        """``is_in_admin_freeze_window`` at ``block``."""
        if self.tempo == 0:
            return False
        if self.pending_epoch_at > self.block:
            return True
        return self.blocks_until_next_auto_epoch() < window


def created(block: int, netuid: int, tempo: int) -> EpochState:
    """``init_new_network``: ``LastEpochBlock = now - netuid % tempo`` (a per-subnet stagger)."""
    stagger = netuid % max(tempo, 1)
    return EpochState(block, tempo, max(0, block - stagger), 0, 0, block)


def roll(state: EpochState, block: int) -> tuple[EpochState, int | None]:
    """The state after ``block``'s ``on_initialize`` and the last epoch run in between (or None)."""
    first = state.next_run()
    if block <= state.block or first is None or first > block:
        return replace(state, block=max(block, state.block)), None
    period = min(state.tempo, MAX_TEMPO + 1)
    runs = 1 + (block - first) // period
    last = first + (runs - 1) * period
    return EpochState(block, state.tempo, last, 0, state.epoch_index + runs, last), last


def with_tempo(state: EpochState, tempo: int) -> EpochState:
    """``apply_tempo_with_cycle_reset``: the new tempo, ``LastEpochBlock`` = now."""
    return replace(state, tempo=tempo, last_epoch_block=state.block)


def triggered(state: EpochState, window: int) -> EpochState:
    """``do_trigger_epoch`` once its checks passed: an epoch ``window`` blocks from now."""
    return replace(state, pending_epoch_at=state.block + window)


def trigger_refusal(state: EpochState, commit_reveal: bool, window: int) -> str | None:
    """The checks of ``do_trigger_epoch`` (the owner's rate limit is left out)."""
    if commit_reveal:
        return "DynamicTempoBlockedByCommitReveal: commit-reveal subnets cannot trigger epochs"
    if state.pending_epoch_at != 0:
        return f"EpochTriggerAlreadyPending: an epoch is already triggered for block {state.pending_epoch_at}"
    remaining = state.blocks_until_next_auto_epoch()
    if remaining < window:
        return f"AutoEpochAlreadyImminent: the next epoch runs in {remaining} blocks, within the {window}-block window"
    return None


def permits(stakes: Sequence[int], k: int, threshold: int, owner_uid: int | None) -> list[bool]:
    """The permits an epoch assigns (``epoch_mechanism``): the top ``k`` nonzero stakes.

    Stakes below ``threshold`` count as 0 (the owner's never), the rest are normalised to
    I32F32 (``floor(s * 2**32 / total)``), ``is_topk_nonzero`` keeps the ``k`` largest
    nonzero (a stable ascending sort drops the lowest uids among ties first), and the
    owner always holds one.
    """
    filtered = [0 if uid != owner_uid and s < threshold else s for uid, s in enumerate(stakes)]
    total = sum(filtered)
    normal = [(s << 32) // total if total else 0 for s in filtered]
    result = [v != 0 for v in normal]
    if len(normal) >= k:
        for uid in sorted(range(len(normal)), key=lambda u: normal[u])[: len(normal) - k]:
            result[uid] = False
    if owner_uid is not None and owner_uid < len(result):
        result[owner_uid] = True
    return result
