"""What the consensus machine needs from its surroundings, and what it hands back.

The machine does no I/O. It is given, at construction:

- an :class:`Application`: proposes values (the paper's ``getValue()``), judges them
  (``valid(v)``), and takes decisions (``commit``), returning the next height's set;
- a :class:`SigningPort`: signs a message for a slot, or refuses (the signing guard).
  The port writes the signed message and the machine's :class:`ResumeState` durably
  *before* it returns, so nothing leaves the machine that a crash could make it forget;
- a signature verifier (``envelope.SignatureVerifier``).

It returns :data:`Output` values; the adapter acts on them: sends, stores, fetches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from platform_cli.core.consensus.certificate import Certificate
from platform_cli.core.consensus.evidence import Evidence
from platform_cli.core.consensus.messages import Slot
from platform_cli.core.consensus.validators import ValidatorSet
from platform_cli.core.envelope import Envelope


@dataclass(frozen=True)
class ResumeState:
    """The machine's variables that must survive a crash (written with each signature).

    ``locked_value``/``valid_value`` are kept whole: after a restart the validator must
    still refuse what its lock forbids (amnesia is how Tendermint deployments fork).
    """

    height: int
    round: int
    step: int
    locked_round: int = -1
    locked_value: dict[str, Any] | None = None
    valid_round: int = -1
    valid_value: dict[str, Any] | None = None


@dataclass(frozen=True)
class Commit:
    """A decided value with the quorum of precommits that decided it."""

    value: dict[str, Any]
    certificate: Certificate

    @property
    def height(self) -> int:
        return self.certificate.height


class Application(Protocol):
    def has_work(self, height: int, now_ms: int) -> bool:
        """Whether this validator wants ``height`` decided now (else it waits for peers)."""
        ...

    def propose(self, height: int, prev: str, now_ms: int) -> dict[str, Any]:
        """getValue(): a value for ``height`` that this validator finds valid."""
        ...

    def validate(self, height: int, prev: str, value: Any, now_ms: int) -> str | None:
        """valid(v) as this validator judges it: None, or the reason it refuses."""
        ...

    def decidable(self, height: int, prev: str, value: Any) -> str | None:
        """The check before a decision a quorum certified: None, or what is wrong.

        A quorum of precommits includes an honest validator that ran ``validate``, so
        this needs no local data (reports, snapshots) a lagging validator may lack.
        """
        ...

    def commit(self, commit: Commit) -> ValidatorSet:
        """Record the decision durably and apply it; returns the set of the next height."""
        ...


class SigningPort(Protocol):
    def sign(self, slot: Slot, kind: str, body: Any, resume: ResumeState, now_ms: int) -> Envelope | None:
        """The signed envelope (stored before it is returned), or None when the guard refuses."""
        ...


@dataclass(frozen=True)
class Broadcast:
    envelope: Envelope


@dataclass(frozen=True)
class Decided:
    commit: Commit


@dataclass(frozen=True)
class Misbehaviour:
    evidence: Evidence


@dataclass(frozen=True)
class Refused:
    """A message we did not take, with whose fault: ``remote`` (the signer or a relay) or
    ``local`` (our own state, e.g. the signing guard)."""

    reason: str
    signer: str
    detail: str
    fault: str = "remote"


@dataclass(frozen=True)
class CatchUp:
    """Peers are past our height: fetch committed entries from ``height`` on."""

    height: int


@dataclass(frozen=True)
class PeerBehind:
    """``signer`` still works on ``height``, which we decided: offer it our commits."""

    signer: str
    height: int


@dataclass(frozen=True)
class ValueRejected:
    height: int
    round: int
    value_id: str
    reason: str


Output = Broadcast | Decided | Misbehaviour | Refused | CatchUp | PeerBehind | ValueRejected
