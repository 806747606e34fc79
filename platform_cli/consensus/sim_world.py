"""The simulated world: keys, stakes, the genesis, registry updates, epochs and reports.

Everything derives from the seed, so a schedule replays byte for byte: keys are ed25519
(deterministic signatures) from ``sha256("platform-sim/<seed>/<label>")``, stakes and
scores from a seeded generator. Signatures are real (PyNaCl) and verified for real; one
cache shared by the simulated validators remembers each verified (signer, payload,
signature) triple, since the answer for the same bytes is the same everywhere.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any

from platform_cli.core import envelope as env
from platform_cli.core import registry as reg
from platform_cli.core.aggregation import SCORE_MAX
from platform_cli.core.challenge import spec_from_canonical
from platform_cli.core.consensus.ledger import Genesis, Ledger, challenge_shares
from platform_cli.core.consensus.validators import ValidatorSet
from platform_cli.core.consensus.weights import ReportSet, WeightsContext
from platform_cli.identity import verify_signature

NETWORK = env.Network(4242, "platform-sim")
START_BLOCK = 10_000
BLOCK_MS = 100
MINERS = 4
EMISSION_PPM = 100_000
UNIT_STAKE = 10**12
WORK_START_MS = 150
"""Validators start deciding once epoch 1's bundles are past their cutoff."""
EPOCH_MS = 2000


class SimKey:
    """An ed25519 key derived from the seed (what a simulated validator signs with)."""

    scheme = "ed25519"

    def __init__(self, seed: int, label: str) -> None:
        import bittensor_core
        from nacl.signing import SigningKey

        self._key = SigningKey(hashlib.sha256(f"platform-sim/{seed}/{label}".encode()).digest())
        self.ss58: str = bittensor_core.ss58_encode(bytes(self._key.verify_key))

    def sign(self, message: bytes) -> bytes:
        return bytes(self._key.sign(message).signature)


@dataclass
class Verifier:
    """Real signature checks, each distinct triple verified once; counts both."""

    memo: bool = True
    checked: int = 0
    computed: int = 0
    _seen: dict[tuple[str, bytes, bytes], bool] = field(default_factory=dict)

    def __call__(self, scheme: str, signer: str, message: bytes, signature: bytes) -> bool:
        self.checked += 1
        key = (signer, message, signature)
        if self.memo and key in self._seen:
            return self._seen[key]
        self.computed += 1
        result = verify_signature(scheme, signer, message, signature)
        if self.memo:
            self._seen[key] = result
        return result


def parse_spread(text: str | None) -> float | None:
    """``random`` (None), ``equal`` (0.0), or the top validator's share: ``0.6`` or ``60%``."""
    if text is None or text == "random":
        return None
    if text == "equal":
        return 0.0
    try:
        share = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ValueError(
            f"stake spread {text!r} is not 'random', 'equal', a fraction or a percentage"
        ) from None
    if not 0 < share < 1:
        raise ValueError(f"stake spread {text!r} must be a share strictly between 0 and 1")
    return share


def make_stakes(rng: random.Random, count: int, spread: float | None) -> list[int]:
    """Stakes in rao; with a spread, validator 0 holds that share and the rest split the remainder."""
    if spread is None:
        return [rng.randint(1, 10) * UNIT_STAKE for _ in range(count)]
    if spread == 0.0 or count == 1:
        return [UNIT_STAKE] * count
    total = 1000 * UNIT_STAKE * count
    top = round(total * spread)
    rest = (total - top) // (count - 1)
    return [top] + [rest] * (count - 1)


def _spec(challenge: str, version: str) -> dict[str, Any]:
    return {
        "id": challenge,
        "version": version,
        "name": challenge,
        "description": "a simulated challenge",
        "abi": 1,
        "entrypoint": "evaluate",
        "module_path": f"{challenge}.wasm",
        "module_sha256": hashlib.sha256(f"{challenge}@{version}".encode()).hexdigest(),
        "resources": {
            "fuel": 1_000_000,
            "memory_bytes": 1 << 20,
            "wall_ms": 1000,
            "max_input_bytes": 1024,
            "max_output_bytes": 1024,
        },
        "scoring": {"emission_ppm": EMISSION_PPM, "mechanism": 0},
        "min_validators": 1,
        "network": "none",
        "params": {},
    }


@dataclass(frozen=True)
class Epoch:
    number: int
    start_ms: int
    cutoff_ms: int
    open_ms: int


class World:
    """What every simulated validator shares: the chain, the sudo key, the workload."""

    def __init__(
        self, seed: int, count: int, heights: int, spread: float | None, *, memo: bool = True
    ) -> None:
        self.seed = seed
        self.heights = heights
        self.rng = random.Random(seed)
        self.verifier = Verifier(memo)
        self.keys = [SimKey(seed, f"validator-{i}") for i in range(count)]
        self.sudo = SimKey(seed, "sudo")
        self.stakes = dict(
            zip((k.ss58 for k in self.keys), make_stakes(self.rng, count, spread), strict=True)
        )
        self.top = self.keys[0].ss58
        self._index = {k.ss58: i for i, k in enumerate(self.keys)}
        self.validators = ValidatorSet.from_stakes(START_BLOCK, self.stakes)
        self.miners = [SimKey(seed, f"miner-{i}").ss58 for i in range(MINERS)]
        self.uids = {hk: uid for uid, hk in enumerate([k.ss58 for k in self.keys] + self.miners)}
        self._seq = 0
        genesis_registry = reg.RegistryState()
        for challenge in ("c1", "c2"):
            update = self.update("add", challenge, "1.0.0")
            genesis_registry = reg.apply(genesis_registry, update, self.sudo.ss58, effective_block=0)
        self.genesis = Genesis(NETWORK, self.sudo.ss58, self.validators, genesis_registry)
        self.updates = self._workload(min(heights + 1, 12))
        self.forged_update = self.update("add", "evil", "1.0.0", key=self.keys[-1])
        self.epochs = [
            Epoch(n, (n - 1) * EPOCH_MS, (n - 1) * EPOCH_MS + 100, (n - 1) * EPOCH_MS + 150)
            for n in (1, 2, 3)
        ]
        self.challenge_ids = ["c1", "c2", "c3"]

    def update(self, action: str, challenge: str, version: str, *, key: SimKey | None = None) -> env.Envelope:
        signer = key or self.sudo
        self._seq += 1
        return env.seal(
            network=NETWORK,
            kind=reg.UPDATE_KIND,
            signer=signer.ss58,
            scheme=signer.scheme,
            seq=self._seq,
            ts_ms=1_800_000_000_000 + self._seq,
            body={
                "action": action,
                "challenge": spec_from_canonical(_spec(challenge, version)).to_canonical(),
            },
            sign=signer.sign,
        )

    def _workload(self, count: int) -> list[env.Envelope]:
        """A valid sequence: updates of c1 and adds of new challenges, alternating."""
        updates = []
        added = 0
        for i in range(count):
            if i % 2 == 0:
                updates.append(self.update("update", "c1", f"1.{i // 2 + 1}.0"))
            else:
                added += 1
                updates.append(self.update("add", f"c{2 + added}", "1.0.0"))
        return updates

    def index_of(self, hotkey: str) -> int:
        return self._index[hotkey]

    def chain_head(self, now_ms: int) -> int:
        return START_BLOCK + now_ms // BLOCK_MS

    def epoch(self, number: int) -> Epoch | None:
        return next((e for e in self.epochs if e.number == number), None)

    def weights_context(self, ledger: Ledger, epoch: int) -> WeightsContext | None:
        known = self.epoch(epoch)
        if known is None:
            return None
        shares = challenge_shares(ledger.registry, self.chain_head(known.start_ms), 0)
        return WeightsContext(NETWORK.netuid, 0, epoch, START_BLOCK, self.stakes, self.uids, shares, 0)

    def honest_reports(self, validator: str, epoch: int) -> ReportSet:
        entries = []
        for challenge in self.challenge_ids:
            for miner in self.miners:
                digest = hashlib.sha256(f"{self.seed}/{epoch}/{challenge}/{miner}".encode()).digest()
                entries.append((challenge, miner, int.from_bytes(digest[:8], "big") % (SCORE_MAX + 1)))
        return ReportSet.of(validator, epoch, entries)

    def skewed_reports(self, validator: str, epoch: int, rng: random.Random) -> ReportSet:
        entries = [(c, m, rng.choice((0, SCORE_MAX))) for c in self.challenge_ids for m in self.miners]
        return ReportSet.of(validator, epoch, entries)
