"""Assembling one validator from its parts: the same code for a node and a simulated one.

:func:`start` rebuilds the ledger from the commit store, reads the signing log's resume
state and builds the machine at the next height, with the guarded signer as its signing
port. The caller calls ``machine.start(now)`` and then drives it (``receive``,
``receive_commit``, ``wake``, ``on_timer`` at ``next_deadline``) over its transport.
"""

from __future__ import annotations

from collections.abc import Callable

from platform_cli.consensus.application import CommitStore, LedgerApplication, replay
from platform_cli.consensus.signing import GuardedSigner, Key, VoteLog
from platform_cli.core.consensus.ledger import Genesis, Ledger
from platform_cli.core.consensus.machine import Machine
from platform_cli.core.consensus.params import Timeouts
from platform_cli.core.consensus.validity import Checker, LocalView


def start(
    *,
    genesis: Genesis,
    store: CommitStore,
    votes: VoteLog,
    key: Key,
    view: LocalView,
    checker: Checker,
    wants: Callable[[Ledger, int], bool],
    timeouts: Timeouts,
    now_ms: int,
) -> tuple[Machine, LedgerApplication]:
    ledger = replay(genesis, store)
    app = LedgerApplication(ledger, store, view, checker, wants)
    resume, own = votes.resume()
    machine = Machine(
        me=key.ss58,
        network=genesis.network,
        validators=ledger.validators,
        height=ledger.height + 1,
        prev=ledger.head,
        app=app,
        signer=GuardedSigner(votes, key, genesis.network),
        verify_signature=checker.verify_signature,
        timeouts=timeouts,
        resume=resume,
        own=own,
        now_ms=now_ms,
    )
    return machine, app
