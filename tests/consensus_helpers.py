"""Shared pieces for the consensus tests: real ed25519 keys, sets, signed messages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from platform_cli.consensus.signing import GuardedSigner, MemoryVoteLog
from platform_cli.consensus.sim_world import SimKey
from platform_cli.core import envelope as env
from platform_cli.core.consensus.entry import Entry, genesis_id
from platform_cli.core.consensus.machine import Machine
from platform_cli.core.consensus.messages import PRECOMMIT, PREVOTE, PROPOSAL
from platform_cli.core.consensus.params import Timeouts
from platform_cli.core.consensus.ports import Commit
from platform_cli.core.consensus.validators import ValidatorSet
from platform_cli.identity import verify_signature

NETWORK = env.Network(100, "platform-test")
TIMEOUTS = Timeouts(propose_ms=1000, prevote_ms=500, precommit_ms=500, delta_ms=250, rebroadcast_ms=10_000)


def keys(count: int, seed: int = 7) -> list[SimKey]:
    """Keys sorted by address, so keys[i] is the i-th member of the set."""
    return sorted((SimKey(seed, f"v{i}") for i in range(count)), key=lambda k: k.ss58)


def validator_set(members: list[SimKey], stakes: list[int] | None = None, block: int = 500) -> ValidatorSet:
    stakes = stakes or [1000] * len(members)
    return ValidatorSet.from_stakes(block, {k.ss58: s for k, s in zip(members, stakes, strict=True)})


def sign(key: SimKey, kind: str, body: Any, seq: int = 1, network: env.Network = NETWORK) -> env.Envelope:
    return env.seal(
        network=network,
        kind=kind,
        signer=key.ss58,
        scheme=key.scheme,
        seq=seq,
        ts_ms=1,
        body=body,
        sign=key.sign,
    )


def vote(
    key: SimKey, kind: str, height: int, round_: int, vset: ValidatorSet, value: str | None
) -> env.Envelope:
    return sign(key, kind, {"height": height, "round": round_, "set": vset.set_id, "value": value})


def prevote(key: SimKey, height: int, round_: int, vset: ValidatorSet, value: str | None) -> env.Envelope:
    return vote(key, PREVOTE, height, round_, vset, value)


def precommit(key: SimKey, height: int, round_: int, vset: ValidatorSet, value: str | None) -> env.Envelope:
    return vote(key, PRECOMMIT, height, round_, vset, value)


def proposal(
    key: SimKey, height: int, round_: int, vset: ValidatorSet, value: dict[str, Any], valid_round: int = -1
) -> env.Envelope:
    body = {"height": height, "round": round_, "set": vset.set_id, "valid_round": valid_round, "value": value}
    return sign(key, PROPOSAL, body)


def entry(height: int, prev: str, tag: str) -> dict[str, Any]:
    """A distinct, well-formed value (a note action the test application accepts)."""
    return Entry(height, prev, ({"type": "note", "text": tag},)).to_canonical()


@dataclass
class ScriptedApp:
    """The machine's application port for unit tests: proposes ``next_value``, judges by
    ``valid`` (default: everything), records commits."""

    prev: str
    valid: Callable[[Any], str | None] = lambda value: None
    next_value: dict[str, Any] | None = None
    work: bool = True
    commits: list[Commit] = field(default_factory=list)
    vset: ValidatorSet | None = None

    def has_work(self, height: int, now_ms: int) -> bool:
        return self.work

    def propose(self, height: int, prev: str, now_ms: int) -> dict[str, Any]:
        return self.next_value or entry(height, prev, "proposed")

    def validate(self, height: int, prev: str, value: Any, now_ms: int) -> str | None:
        return self.valid(value)

    def decidable(self, height: int, prev: str, value: Any) -> str | None:
        return None if value.get("prev") == prev else "does not extend the log"

    def commit(self, commit: Commit) -> ValidatorSet:
        self.commits.append(commit)
        assert self.vset is not None
        return self.vset


def machine(
    me: SimKey,
    vset: ValidatorSet,
    app: ScriptedApp | None = None,
    votes: MemoryVoteLog | None = None,
    now: int = 0,
) -> tuple[Machine, ScriptedApp, MemoryVoteLog]:
    prev = genesis_id(NETWORK, vset.set_id)
    app = app or ScriptedApp(prev)
    app.vset = vset
    votes = votes or MemoryVoteLog()
    resume, own = votes.resume()
    built = Machine(
        me=me.ss58,
        network=NETWORK,
        validators=vset,
        height=resume.height if resume else 1,
        prev=prev,
        app=app,
        signer=GuardedSigner(votes, me, NETWORK),
        verify_signature=verify_signature,
        timeouts=TIMEOUTS,
        resume=resume,
        own=own,
        now_ms=now,
    )
    return built, app, votes
