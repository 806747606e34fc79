"""Verifying a commit certificate file offline (``platform consensus verify``).

The validator set comes either from a validator-set file (``--snapshot``)::

    {"network": {"netuid": 100, "genesis": "platform-devnet"},
     "block": 1000,
     "validators": [{"hotkey": "5F...", "stake": 40000000000000}, ...]}

or from the metagraph snapshot of the certificate's block in the local state (the
validators with a permit and at least ``weights.min_stake_rao``), else from the set the
local committed log installed for that block. The certificate must
be for that network: the file's, or the configured one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from platform_cli import files
from platform_cli.config import Config
from platform_cli.core import canonical
from platform_cli.core import envelope as env
from platform_cli.core.consensus import certificate as certs
from platform_cli.core.consensus.actions import VALIDATORS
from platform_cli.core.consensus.validators import ValidatorSet, ValidatorSetError
from platform_cli.errors import PlatformError, VerificationFailed
from platform_cli.identity import verify_signature
from platform_cli.state.db import State
from platform_cli.state.metagraph import latest_snapshot

MAX_CERTIFICATE_BYTES = 16 * 1024 * 1024
MAX_SET_BYTES = 4 * 1024 * 1024


def _json(path: Path | str, limit: int, what: str) -> Any:
    data = files.read_limited(path, limit, what)
    try:
        return env.strict_json_loads(data)
    except env.EnvelopeError as exc:
        raise PlatformError(f"{path}: {exc}") from None


def load_certificate(path: Path | str) -> tuple[certs.Certificate, Any]:
    try:
        return certs.from_json(_json(path, MAX_CERTIFICATE_BYTES, "certificate"))
    except certs.CertificateError as exc:
        raise VerificationFailed(f"{path}: {exc}") from None


def load_validator_set(path: Path | str) -> tuple[env.Network, ValidatorSet]:
    doc = _json(path, MAX_SET_BYTES, "validator set")
    if not isinstance(doc, dict) or set(doc) != {"network", "block", "validators"}:
        raise PlatformError(f"{path}: a validator set file has exactly 'network', 'block' and 'validators'")
    network = doc["network"]
    if not isinstance(network, dict) or set(network) != {"netuid", "genesis"}:
        raise PlatformError(f"{path}: network must be an object with 'netuid' and 'genesis'")
    members = doc["validators"]
    if not isinstance(members, list) or not all(
        isinstance(m, dict) and set(m) == {"hotkey", "stake"} for m in members
    ):
        raise PlatformError(f"{path}: validators must be a list of objects with 'hotkey' and 'stake'")
    for index, member in enumerate(members):
        stake = member["stake"]
        if not isinstance(member["hotkey"], str) or isinstance(stake, bool) or not isinstance(stake, int):
            raise PlatformError(f"{path}: validator {index} needs a string hotkey and an integer stake")
    hotkeys = [m["hotkey"] for m in members]
    if len(hotkeys) != len(set(hotkeys)):
        raise PlatformError(f"{path}: a validator is listed twice")
    try:
        validators = ValidatorSet.from_stakes(doc["block"], {m["hotkey"]: m["stake"] for m in members})
    except ValidatorSetError as exc:
        raise PlatformError(f"{path}: {exc}") from None
    return env.Network(network["netuid"], network["genesis"]), validators


def validator_set_from_log(state: State, block: int) -> ValidatorSet | None:
    """The set of ``block`` as the committed log installed it (a ``validators`` action):
    a node that was away when the chain was at ``block`` holds it from its catch-up."""
    for (value,) in state.execute("SELECT value FROM consensus_log ORDER BY height DESC"):
        for action in canonical.decode(value).get("actions", []):
            if action.get("type") == VALIDATORS and action.get("set", {}).get("block") == block:
                return ValidatorSet.from_canonical(action["set"])
    return None


def validator_set_from_state(state: State, netuid: int, block: int, min_stake_rao: int) -> ValidatorSet:
    snapshot = latest_snapshot(state, netuid, at_or_before=block)
    if snapshot is None or snapshot.block != block:
        from_log = validator_set_from_log(state, block)
        if from_log is not None:
            return from_log
        raise PlatformError(
            f"no metagraph snapshot of block {block} in the state: pass the validator set with --snapshot FILE"
        )
    try:
        return ValidatorSet.from_stakes(block, snapshot.validators(min_stake_rao))
    except ValidatorSetError as exc:
        raise PlatformError(f"the snapshot of block {block}: {exc}") from None


def verify_file(
    cert_path: Path | str, snapshot_path: Path | str | None, config: Config, state: State | None
) -> dict[str, Any]:
    """What the certificate proves; :class:`VerificationFailed` says exactly what is wrong."""
    cert, value = load_certificate(cert_path)
    if snapshot_path is not None:
        network, validators = load_validator_set(snapshot_path)
    else:
        from platform_cli.chain.settings import weight_settings

        if state is None:
            raise PlatformError(
                f"no metagraph snapshot of block {cert.set_block}: there is no state here; "
                "pass the validator set with --snapshot FILE"
            )
        network = config.network.network
        validators = validator_set_from_state(
            state, network.netuid, cert.set_block, weight_settings(config).min_stake_rao
        )
    if cert.network != network:
        raise VerificationFailed(
            f"{cert_path}: the certificate is for netuid {cert.network.netuid} genesis {cert.network.genesis!r}, "
            f"the validator set for netuid {network.netuid} genesis {network.genesis!r}"
        )
    try:
        certs.verify(cert, validators, verify_signature, value=value)
    except certs.CertificateError as exc:
        raise VerificationFailed(f"{cert_path}: {exc}") from None
    stake, count = validators.power(cert.signers)
    return {
        "valid": True,
        "height": cert.height,
        "round": cert.round,
        "value_id": cert.value_id,
        "set_block": cert.set_block,
        "signers": count,
        "validators": validators.size,
        "stake_ppm": stake * 1_000_000 // validators.total,
        "value_checked": value is not None,
    }
