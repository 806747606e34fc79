"""Miners' submissions: the body of a ``submission`` message (pure: no I/O).

A miner submits a file for a challenge by signing a ``submission`` envelope with its
hotkey and gossiping it on the ``submissions`` topic; the file itself travels apart,
content-addressed (the DHT key ``/sub/<sha256>``). The body names exactly the challenge,
the file's sha256 and its size, so the signature binds one miner to one file for one
challenge and says nothing else a validator would have to trust. A validator records
the submissions it admitted; a score report counts only for a file its miner submitted
(``platform_cli.scores``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from typing import Any

from platform_cli.core.challenge import is_challenge_id

SUBMISSION_KIND = "submission"
MAX_SUBMISSION_BYTES = 64 * 1024 * 1024
"""The largest file a submission may name (the evaluator reads no more)."""

_HEX64 = re.compile(r"[0-9a-f]{64}")


class SubmissionError(ValueError):
    """A submission body that does not follow the schema; the message names the field."""


@dataclass(frozen=True)
class Submission:
    challenge: str
    sha256: str
    size: int

    def to_body(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, challenge: str, content: bytes) -> Submission:
        """The submission of ``content`` for ``challenge`` (validated like a received one)."""
        return parse_submission(
            {"challenge": challenge, "sha256": hashlib.sha256(content).hexdigest(), "size": len(content)}
        )


def parse_submission(body: Any) -> Submission:
    """Validate a submission body; raise :class:`SubmissionError` naming the field at fault."""
    fields = Submission.__dataclass_fields__
    if not isinstance(body, dict) or set(body) != set(fields):
        raise SubmissionError(f"a submission has exactly the fields {sorted(fields)}")
    if not is_challenge_id(body["challenge"]):
        raise SubmissionError(f"challenge {body['challenge']!r} is not a challenge id")
    if not isinstance(body["sha256"], str) or not _HEX64.fullmatch(body["sha256"]):
        raise SubmissionError("sha256 is not 64 lowercase hex digits")
    size = body["size"]
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_SUBMISSION_BYTES:
        raise SubmissionError(f"size must be an integer in 1..{MAX_SUBMISSION_BYTES}, got {size!r}")
    return Submission(body["challenge"], body["sha256"], size)


@dataclass(frozen=True)
class Intake:
    """What a validator knows when a submission arrives: who may submit, and for what."""

    registered: frozenset[str]
    """Hotkeys registered on the subnet (the newest metagraph snapshot)."""
    limits: dict[str, tuple[int, int]]
    """Active challenge id -> (largest file in bytes, submissions per miner per epoch)."""


def refusal(submission: Submission, miner: str, intake: Intake, accepted_this_epoch: int) -> str | None:
    """Why a validator does not take ``miner``'s submission, or None if it does.

    ``accepted_this_epoch`` counts the miner's submissions for the same challenge that
    were already accepted in the current epoch. The reasons are stable words, counted
    per reason by the validator.
    """
    if miner not in intake.registered:
        return "unregistered_miner"
    limit = intake.limits.get(submission.challenge)
    if limit is None:
        return "inactive_challenge"
    max_bytes, per_epoch = limit
    if submission.size > max_bytes:
        return "too_large"
    if accepted_this_epoch >= per_epoch:
        return "over_epoch_limit"
    return None
