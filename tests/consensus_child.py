"""A process the durability tests kill: it signs through the SQLite guard or appends commits.

    python tests/consensus_child.py DATA_DIR sign        # sign slot after slot, forever
    python tests/consensus_child.py DATA_DIR pause H R S  # sign one slot, then wait (written, not sent)
    python tests/consensus_child.py DATA_DIR again H R S VALUE  # re-sign a slot with a given value
    python tests/consensus_child.py DATA_DIR commit SEED  # append a simulated log's commits

Every line printed is flushed after the durable write it reports: what the parent read
was on disk before the kill.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from platform_cli.consensus.signing import GuardedSigner
from platform_cli.consensus.sim_world import SimKey
from platform_cli.consensus.store import SqliteCommitStore, SqliteVoteLog
from platform_cli.core.consensus.messages import PREVOTE
from platform_cli.core.consensus.ports import ResumeState
from platform_cli.core.envelope import Network
from platform_cli.state.db import open_state

NETWORK = Network(100, "platform-test")
SET_ID = "ee" * 32


def say(*words: object) -> None:
    print(*words, flush=True)


def body(height: int, round_: int, value: str) -> dict:
    return {"height": height, "round": round_, "set": SET_ID, "value": value}


def next_slot(slot: tuple[int, int, int]) -> tuple[int, int, int]:
    height, round_, step = slot
    if step < 2:
        return height, round_, step + 1
    return (height, round_ + 1, 0) if round_ < 1 else (height + 1, 0, 0)


def sign(signer: GuardedSigner, slot: tuple[int, int, int], value: str) -> None:
    height, round_, step = slot
    resume = ResumeState(height, round_, step, locked_round=round_, locked_value={"v": value})
    envelope = signer.sign(slot, PREVOTE, body(height, round_, value), resume, 1)
    if envelope is None:
        say("refused", *slot)
    else:
        say("signed", *slot, envelope.to_wire().hex())


def main(data_dir: Path, mode: str, args: list[str]) -> None:
    state = open_state(data_dir)
    key = SimKey(1, "child")
    votes = SqliteVoteLog(state, key.ss58)
    signer = GuardedSigner(votes, key, NETWORK)
    value = f"{os.getpid():064x}"
    if mode == "sign":
        resume, _ = votes.resume()
        slot = (1, 0, 0)
        if resume is not None:
            slot = (resume.height, resume.round, resume.step)
            say("resume", *slot, resume.locked_round)
            sign(signer, slot, value)  # another process, another value: must be refused
            slot = next_slot(slot)
        while True:
            sign(signer, slot, value)
            slot = next_slot(slot)
    elif mode == "pause":
        sign(signer, (int(args[0]), int(args[1]), int(args[2])), args[3])
        sys.stdin.read()
    elif mode == "again":
        sign(signer, (int(args[0]), int(args[1]), int(args[2])), args[3])
    elif mode == "commit":
        from platform_cli.consensus.simulator import SimConfig, simulate

        result = simulate(SimConfig(seed=int(args[0]), validators=4, heights=int(args[1]), faults=False))
        store = SqliteCommitStore(state, result.world.genesis.id)
        height, _ = store.head()
        say("head", height)
        for commit in result.log()[height:]:
            store.append(commit)
            say("committed", commit.height)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3:])
