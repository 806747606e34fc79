"""The dev chain as one block sees it: stored items plus the ones the pallet derives.

Storage queries for ``Uids``, ``Keys``, ``SubnetworkN``, ``Owner`` and
``BlockAtRegistration`` are answered from the neuron rows; ``ValidatorPermit``,
``Tempo``, ``LastEpochBlock``, ``PendingEpochAt``, ``SubnetEpochIndex`` and
``BlocksSinceLastStep`` from the subnet's epoch anchor (``epochs.EpochState`` after some
block ``A``, with the permits it assigned) rolled forward to the block read. Every
write first materialises the anchor at the head (:meth:`BlockState.materialize`), so
nothing the epochs depend on (stakes, tempo, limits) changes between an anchor and the
blocks rolled forward from it.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from platform_cli.chain.dev import epochs
from platform_cli.chain.dev.store import NeuronRow, Store

PALLET = "SubtensorModule"
ANCHOR = ("DevChain", "EpochAnchor")
MECHANISM_STRIDE = 4096  # GLOBAL_MAX_SUBNET_COUNT: storage index = mechid * stride + netuid
GLOBAL_DEFAULTS: dict[str, Any] = {  # StorageValues with a default (ValueQuery)
    "StakeThreshold": 0,
    "AdminFreezeWindow": epochs.ADMIN_FREEZE_WINDOW,
    "CommitRevealWeightsVersion": 4,
}
EPOCH_ITEMS = ("Tempo", "LastEpochBlock", "PendingEpochAt", "SubnetEpochIndex", "BlocksSinceLastStep")


class BlockState:
    """Reads at ``block``; writes (stamped ``block``) when ``block`` is the head."""

    def __init__(self, store: Store, block: int) -> None:
        self.store, self.block = store, block

    # -- stored items ----------------------------------------------------------------------
    def item(self, name: str, params: list[Any], pallet: str = PALLET) -> Any:
        value = self.store.get(pallet, name, params, self.block)
        if value is None and not params:
            return GLOBAL_DEFAULTS.get(name)
        return value

    def put(self, name: str, params: list[Any], value: Any, pallet: str = PALLET) -> None:
        self.store.put(pallet, name, params, value, self.block)

    def delete(self, name: str, params: list[Any]) -> None:
        self.store.put(PALLET, name, params, None, self.block)

    def get(self, name: str, params: list[Any]) -> Any:
        """What a storage query for ``SubtensorModule.name(params)`` answers at this block."""
        if name in ("Uids", "Keys", "SubnetworkN", "BlockAtRegistration"):
            return self._neuron_item(name, params)
        if name == "Owner":
            return next(
                (
                    n.coldkey
                    for netuid in self.netuids()
                    for n in self.neurons(netuid)
                    if n.hotkey == params[0]
                ),
                None,
            )
        if name == "ValidatorPermit":
            return self.permits(params[0]) if self.neurons(params[0]) else None
        if name in EPOCH_ITEMS:
            state = self.epoch(params[0])
            if state is None:
                return None
            return {
                "Tempo": state.tempo,
                "LastEpochBlock": state.last_epoch_block,
                "PendingEpochAt": state.pending_epoch_at,
                "SubnetEpochIndex": state.epoch_index,
                "BlocksSinceLastStep": state.blocks_since_last_step,
            }[name]
        return self.item(name, params)

    def _neuron_item(self, name: str, params: list[Any]) -> Any:
        rows = self.neurons(params[0])
        if name == "SubnetworkN":
            return len(rows) if self.item("NetworksAdded", params[:1]) else None
        if name == "Uids":
            return next((n.uid for n in rows if n.hotkey == params[1]), None)
        match = next((n for n in rows if n.uid == params[1]), None)
        if match is None:
            return None
        return match.hotkey if name == "Keys" else match.registered_at

    # -- neurons ---------------------------------------------------------------------------
    def netuids(self) -> list[int]:
        return self.store.netuids(self.block)

    def neurons(self, netuid: int) -> list[NeuronRow]:
        return self.store.neurons(netuid, self.block)

    def uid_of(self, netuid: int, hotkey: str) -> int | None:
        return next((n.uid for n in self.neurons(netuid) if n.hotkey == hotkey), None)

    def stake_of(self, netuid: int, hotkey: str) -> int:
        return next((n.stake_rao for n in self.neurons(netuid) if n.hotkey == hotkey), 0)

    def owner_uid(self, netuid: int) -> int | None:
        """``get_owner_uid``: the uid of ``SubnetOwnerHotkey``, if registered."""
        owner = self.item("SubnetOwnerHotkey", [netuid])
        return self.uid_of(netuid, owner) if owner else None

    def put_neuron(self, netuid: int, row: NeuronRow) -> None:
        self.store.put_neuron(netuid, row, self.block)

    # -- epochs and permits --------------------------------------------------------------------
    def _anchor(self, netuid: int) -> tuple[epochs.EpochState, list[bool]] | None:
        stored = self.item(ANCHOR[1], [netuid], pallet=ANCHOR[0])
        if stored is None:
            return None
        granted = stored.pop("permits")
        return epochs.EpochState(**stored), granted

    def _rolled(self, netuid: int) -> tuple[epochs.EpochState, list[bool]] | None:
        anchor = self._anchor(netuid)
        if anchor is None:
            return None
        state, granted = anchor
        rolled, last_run = epochs.roll(state, self.block)
        if last_run is not None:
            granted = self._assigned_permits(netuid, BlockState(self.store, state.block))
        return rolled, granted

    @staticmethod
    def _assigned_permits(netuid: int, at: BlockState) -> list[bool]:
        stakes = [n.stake_rao for n in at.neurons(netuid)]
        limit = int(at.item("MaxAllowedValidators", [netuid]) or 0)
        return epochs.permits(stakes, limit, int(at.item("StakeThreshold", [])), at.owner_uid(netuid))

    def epoch(self, netuid: int) -> epochs.EpochState | None:
        rolled = self._rolled(netuid)
        return rolled[0] if rolled else None

    def permits(self, netuid: int) -> list[bool]:
        rolled = self._rolled(netuid)
        granted = rolled[1] if rolled else []
        n = len(self.neurons(netuid))
        return (list(granted) + [False] * n)[:n]

    def set_anchor(self, netuid: int, state: epochs.EpochState, granted: list[bool]) -> None:
        self.put(ANCHOR[1], [netuid], {**asdict(state), "permits": granted}, pallet=ANCHOR[0])

    def materialize(self) -> None:
        """Store every subnet's epoch state as of this block: the start of a write."""
        for netuid in self.netuids():
            rolled = self._rolled(netuid)
            if rolled is not None:
                self.set_anchor(netuid, *rolled)

    def grant_permits(self, netuid: int) -> None:
        """Assign permits from the stakes now, as an epoch would (the seed's genesis)."""
        state = self.epoch(netuid)
        if state is not None:
            self.set_anchor(netuid, state, self._assigned_permits(netuid, self))

    def revoke_permit(self, netuid: int, uid: int) -> None:
        """``clear_neuron`` leaves a replaced uid without a permit until the next epoch."""
        state = self.epoch(netuid)
        if state is not None:
            granted = self.permits(netuid)
            if uid < len(granted):
                granted[uid] = False
            self.set_anchor(netuid, state, granted)
