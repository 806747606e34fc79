"""A faulty validator, for the devnet only: what ``platform up --byzantine`` does wrong.

The network must stay correct while up to a third of the stake misbehaves; the devnet
proves it with real processes (``platform devnet up --byzantine K``). A Byzantine
validator here does three things at once:

- **wrong scores**: every report it publishes (and its bundle's report set) carries the
  score inverted (``SCORE_MAX - score``), so its miners' medians would move if a third
  of the stake could move them;
- **equivocation**: after each prevote and precommit it signs and gossips a second,
  conflicting vote at the same slot (outside the signing guard), so honest validators
  must keep one vote per signer, keep the evidence and suspend it;
- **garbage**: every second it gossips bytes that are no envelope on every topic, which
  admission refuses and charges to it.

``up`` refuses the option on any chain but the embedded dev chain.
"""

from __future__ import annotations

import logging
import os
import secrets
from typing import Any

import trio

from platform_cli.core import envelope as env
from platform_cli.core.aggregation import SCORE_MAX
from platform_cli.core.consensus.messages import PRECOMMIT, PREVOTE
from platform_cli.identity import Signer

log = logging.getLogger("platform.byzantine")
GARBAGE_EVERY_S = 1.0


def wrong_score(score: int) -> int:
    return SCORE_MAX - score


def conflicting_vote(envelope: env.Envelope, signer: Signer, seq: int, now_ms: int) -> env.Envelope | None:
    """A vote at the slot of ``envelope`` for another value (nil for a value, a random id for nil)."""
    if envelope.kind not in (PREVOTE, PRECOMMIT):
        return None
    body = dict(envelope.body)
    body["value"] = None if body["value"] is not None else secrets.token_hex(32)
    return env.seal(
        network=envelope.network,
        kind=envelope.kind,
        signer=signer.ss58,
        scheme=signer.scheme,
        seq=seq,
        ts_ms=now_ms,
        body=body,
        sign=signer.sign,
    )


class GarbageService:
    """Gossips undecodable bytes on every topic, every second."""

    name = "byzantine"

    def __init__(self, p2p: Any) -> None:
        self.p2p = p2p

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(GARBAGE_EVERY_S)
            node = self.p2p.node
            if node is None:
                continue
            for topic in node.topics.values():
                try:
                    await _send_unchecked(node.pubsub, topic, os.urandom(64))
                except Exception as exc:  # nobody to send to yet
                    log.debug("byzantine.garbage_not_sent topic=%s error=%s", topic, exc)


async def _send_unchecked(pubsub: Any, topic: str, data: bytes) -> None:
    """What ``Pubsub.publish`` does, minus running our own validators on the message (which
    refuse garbage, so an honest node never sends it): a faulty node's way to send it."""
    from libp2p.pubsub.pb import rpc_pb2
    from libp2p.pubsub.pubsub import PUBSUB_SIGNING_PREFIX

    message = rpc_pb2.Message(
        data=data, topicIDs=[topic], from_id=pubsub.my_id.to_bytes(), seqno=pubsub._next_seqno()
    )
    if pubsub.strict_signing:
        message.signature = pubsub.sign_key.sign(PUBSUB_SIGNING_PREFIX.encode() + message.SerializeToString())
        message.key = pubsub.host.get_public_key().serialize()
    await pubsub.router.publish(pubsub.my_id, message)
