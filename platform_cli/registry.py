"""Challenge registry operations behind ``platform registry``.

A signed update file is JSON: ``{"envelope": <envelope in file form>, "module": <base64
WASM, for add and update>}``. The envelope's body carries the challenge metadata with the
module's sha256, so the signature covers both; the module travels beside it and must hash
to the signed value.

``registry_versions`` holds every version's current state; ``registry_history`` every
committed change with the block from which it takes effect, written in the same
transaction as the change (``commit_update``), so the registry as of any block can be
read back (``active_at``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from platform_cli import files
from platform_cli.clock import now_ms
from platform_cli.config import Config
from platform_cli.core import envelope as env
from platform_cli.core import registry as core
from platform_cli.core.challenge import (
    MAX_MODULE_BYTES,
    ChallengeSpec,
    SpecError,
    parse_spec,
    spec_from_canonical,
)
from platform_cli.errors import PlatformError, VerificationFailed
from platform_cli.identity import Signer, verify_signature
from platform_cli.state import audit, sequences
from platform_cli.state.db import State, write_transaction

UPDATE_MAX_BYTES = 64 * 1024
# Registry updates are rare and signed offline, possibly long before they are proposed:
# the replay window spans about 35 years of millisecond-based sequence numbers.
UPDATE_REPLAY_WINDOW = 2**40
MODULE_ACTIONS = (core.Action.ADD, core.Action.UPDATE)


@dataclass(frozen=True)
class SignedUpdate:
    envelope: env.Envelope
    module: bytes | None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"envelope": self.envelope.to_file_json()}
        if self.module is not None:
            doc["module"] = base64.b64encode(self.module).decode()
        return doc


def load_challenge(toml_path: Path) -> tuple[ChallengeSpec, bytes]:
    """Read ``challenge.toml`` and its module; the module must match the declared sha256."""
    try:
        spec = parse_spec(files.read_toml(toml_path, "challenge file"))
    except SpecError as exc:
        raise PlatformError(f"{toml_path}: {exc}") from None
    module_path = files.inside(toml_path.parent, spec.module_path, f"{toml_path}: module.path")
    written = toml_path.parent / spec.module_path  # errors name the path as the file gives it
    module = files.read_regular(module_path, MAX_MODULE_BYTES, "module", shown=written)[0]
    actual = hashlib.sha256(module).hexdigest()
    if actual != spec.module_sha256:
        raise PlatformError(
            f"{toml_path}: module.sha256 is {spec.module_sha256} but {module_path} hashes to {actual}"
        )
    return spec, module


def sign_update(
    state: State,
    config: Config,
    toml_path: Path,
    signer: Signer,
    action: str,
    emit: Callable[[SignedUpdate], None] = lambda update: None,
) -> SignedUpdate:
    """Sign an update; ``emit`` writes it out before the signing is recorded in the audit log.

    The sequence number is reserved (and committed) before the signature exists, so it is
    never used twice even if the process dies; the audit entry is written only once
    ``emit`` returned, so a failed output records nothing.
    """
    spec, module = load_challenge(toml_path)
    kind = core.Action(action)
    now = now_ms()
    seq = sequences.next_own_seq(state, signer.ss58, floor=now)
    envelope = env.seal(
        network=config.network.network,
        kind=core.UPDATE_KIND,
        signer=signer.ss58,
        scheme=signer.scheme,
        seq=seq,
        ts_ms=now,
        body={"action": kind.value, "challenge": spec.to_canonical()},
        sign=signer.sign,
    )
    update = SignedUpdate(envelope, module if kind in MODULE_ACTIONS else None)
    emit(update)
    audit.append(
        state,
        signer.ss58,
        "registry.sign",
        {"challenge": spec.id, "version": spec.version, "action": kind.value, "seq": seq},
    )
    return update


UPDATE_FILE_MAX_BYTES = UPDATE_MAX_BYTES + MAX_MODULE_BYTES * 4 // 3 + 1024


def load_update(source: str) -> SignedUpdate:
    """Read a signed update file (``-`` for stdin)."""
    name = "<stdin>" if source == "-" else source
    return read_update(files.read_limited(source, UPDATE_FILE_MAX_BYTES, "update"), name)


def read_update(text: str | bytes, source: str) -> SignedUpdate:
    if len(text) > UPDATE_FILE_MAX_BYTES:
        raise VerificationFailed(f"{source}: file is larger than any valid update")
    try:
        doc = env.strict_json_loads(text)
    except env.EnvelopeError as exc:
        raise VerificationFailed(f"{source}: {exc}") from None
    if not isinstance(doc, dict) or "envelope" not in doc or set(doc) - {"envelope", "module"}:
        raise VerificationFailed(f"{source}: expected an object with 'envelope' and optional 'module'")
    try:
        envelope = env.from_file_json(doc["envelope"])
    except env.EnvelopeError as exc:
        raise VerificationFailed(f"{source}: {exc}") from None
    module = None
    if "module" in doc:
        try:
            module = base64.b64decode(doc["module"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise VerificationFailed(f"{source}: module is not valid base64") from None
    return SignedUpdate(envelope, module)


def verify_update(
    update: SignedUpdate,
    config: Config,
    *,
    sudo: str | None = None,
    state: State | None = None,
    module_optional: bool = False,
) -> core.RegistryUpdate:
    """Check signature, network, kind, size, replay, sudo authority and module hash.

    ``module_optional``: an update consensus committed is recorded even when its module
    has not reached this node yet (it is fetched from the DHT by its hash when needed)."""
    policy = env.VerifyPolicy(
        network=config.network.network,
        kinds={core.UPDATE_KIND},
        max_size=UPDATE_MAX_BYTES,
        max_age_ms=None,
    )
    window = (
        sequences.window(state, update.envelope.signer, kind=core.UPDATE_KIND, size=UPDATE_REPLAY_WINDOW)
        if state is not None
        else None
    )
    try:
        env.verify(update.envelope, policy, verify_signature=verify_signature, now_ms=now_ms(), window=window)
        parsed = core.authorize(update.envelope, sudo or config.network.sudo)
    except (env.EnvelopeError, core.RegistryError) as exc:
        raise VerificationFailed(str(exc)) from None
    if parsed.action in MODULE_ACTIONS and not (module_optional and update.module is None):
        if update.module is None:
            raise VerificationFailed(f"a '{parsed.action.value}' update must carry its module")
        actual = hashlib.sha256(update.module).hexdigest()
        if actual != parsed.spec.module_sha256:
            raise VerificationFailed(
                f"module hashes to {actual}, the signed metadata says {parsed.spec.module_sha256}"
            )
    return parsed


def registry_state(state: State) -> core.RegistryState:
    versions = {}
    for spec_text, lifecycle, update_id in state.execute(
        "SELECT spec, state, update_id FROM registry_versions"
    ):
        spec = spec_from_canonical(json.loads(spec_text))
        versions[(spec.id, spec.version)] = core.VersionRecord(spec, core.Lifecycle(lifecycle), update_id)
    history = tuple(
        core.Transition(update_id, cid, version, core.Lifecycle(previous), core.Lifecycle(new), block)
        for update_id, cid, version, previous, new, block in state.execute(
            "SELECT update_id, challenge_id, version, previous, state, effective_block "
            "FROM registry_history ORDER BY seq"
        )
    )
    return core.RegistryState(versions, history)


def active_at(state: State, block: int) -> dict[str, core.VersionRecord]:
    """Challenge id -> the version active at ``block`` by the committed history."""
    return registry_state(state).active_at(block)


def _save_versions(state: State, before: core.RegistryState, after: core.RegistryState, now: int) -> None:
    for key, record in after.versions.items():
        if before.versions.get(key) == record:
            continue
        state.execute(
            "INSERT INTO registry_versions (challenge_id, version, state, spec, module_sha256, update_id, updated_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (challenge_id, version) DO UPDATE SET "
            "state = excluded.state, spec = excluded.spec, update_id = excluded.update_id, updated_ms = excluded.updated_ms",
            [
                record.spec.id,
                record.spec.version,
                record.state.value,
                json.dumps(record.spec.to_canonical(), sort_keys=True),
                record.spec.module_sha256,
                record.update_id,
                now,
            ],
        )


def _save_history(state: State, before: core.RegistryState, after: core.RegistryState, now: int) -> None:
    for change in after.history[len(before.history) :]:
        state.execute(
            "INSERT INTO registry_history (update_id, challenge_id, version, previous, state, effective_block, "
            "committed_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                change.update_id,
                change.challenge,
                change.version,
                change.previous.value,
                change.state.value,
                change.effective_block,
                now,
            ],
        )


def propose(state: State, config: Config, update: SignedUpdate, *, module_optional: bool = False) -> str:
    """Verify and record the update as pending; returns its id. Consensus applies it later."""
    parsed = verify_update(update, config, state=state, module_optional=module_optional)
    envelope = update.envelope
    update_id = envelope.message_id()
    now = now_ms()
    with write_transaction(state):
        if state.execute("SELECT 1 FROM registry_updates WHERE update_id = ?", [update_id]).fetchone():
            raise VerificationFailed(f"update {update_id[:16]} was already proposed")
        before = registry_state(state)
        try:
            after = core.stage(before, parsed)
        except core.RegistryError as exc:
            raise PlatformError(f"update does not apply to the registry: {exc}") from None
        sequences.accept(
            state, envelope.signer, envelope.seq, kind=core.UPDATE_KIND, size=UPDATE_REPLAY_WINDOW
        )
        if update.module is not None:
            state.execute(
                "INSERT OR IGNORE INTO modules (sha256, size, content) VALUES (?, ?, ?)",
                [parsed.spec.module_sha256, len(update.module), update.module],
            )
        state.execute(
            "INSERT INTO registry_updates (update_id, action, challenge_id, version, signer, seq, status, envelope, received_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
            [
                update_id,
                parsed.action.value,
                parsed.spec.id,
                parsed.spec.version,
                envelope.signer,
                envelope.seq,
                json.dumps(envelope.to_file_json(), sort_keys=True),
                now,
            ],
        )
        _save_versions(state, before, after, now)
        audit.append(
            state,
            envelope.signer,
            "registry.propose",
            {
                "update_id": update_id,
                "action": parsed.action.value,
                "challenge": parsed.spec.id,
                "version": parsed.spec.version,
            },
        )
    return update_id


def commit_update(
    state: State, config: Config, update_id: str, *, effective_block: int
) -> core.RegistryState:
    """Apply an agreed, pending update to the registry; the consensus engine's entry point.

    ``effective_block`` is the block from which the change takes effect, as the committed
    entry names it: every validator switches versions at the same point. It must be at or
    after the previous committed update's (else :class:`PlatformError`, nothing written).
    The version states and their history rows are written in one transaction. An update
    that no longer applies (a conflicting update was committed first) is marked
    ``rejected`` with the reason and its draft dropped.
    """
    now = now_ms()
    with write_transaction(state):
        row = state.execute(
            "SELECT envelope, status FROM registry_updates WHERE update_id = ?", [update_id]
        ).fetchone()
        if row is None:
            raise PlatformError(f"no proposed update {update_id}")
        if row[1] != "pending":
            raise PlatformError(f"update {update_id[:16]} is already {row[1]}")
        envelope = env.from_file_json(json.loads(row[0]))
        before = registry_state(state)
        try:
            core.check_effective_block(before, effective_block)
        except core.RegistryError as exc:
            raise PlatformError(f"cannot commit update {update_id[:16]}: {exc}") from None
        try:
            after = core.apply(before, envelope, config.network.sudo, effective_block=effective_block)
        except core.RegistryError as exc:
            state.execute(
                "UPDATE registry_updates SET status = 'rejected', reason = ?, decided_ms = ? WHERE update_id = ?",
                [str(exc), now, update_id],
            )
            _drop_draft(state, update_id)
            audit.append(state, "consensus", "registry.reject", {"update_id": update_id, "reason": str(exc)})
            return before
        _save_versions(state, before, after, now)
        _save_history(state, before, after, now)
        state.execute(
            "UPDATE registry_updates SET status = 'applied', decided_ms = ? WHERE update_id = ?",
            [now, update_id],
        )
        audit.append(
            state, "consensus", "registry.apply", {"update_id": update_id, "effective_block": effective_block}
        )
    return after


def _drop_draft(state: State, update_id: str) -> None:
    """Remove the draft version a rejected proposal staged, so it can be proposed again."""
    row = state.execute(
        "SELECT challenge_id, version FROM registry_updates WHERE update_id = ? AND action IN ('add', 'update')",
        [update_id],
    ).fetchone()
    if row is not None:
        state.execute(
            "DELETE FROM registry_versions WHERE challenge_id = ? AND version = ? AND state = 'draft'",
            list(row),
        )


def list_versions(state: State, lifecycle: str | None = None) -> list[dict[str, Any]]:
    """Every version with its state and the block its newest committed change took effect."""
    sql = (
        "SELECT v.challenge_id, v.version, v.state, v.module_sha256, v.update_id, v.updated_ms, "
        "(SELECT h.effective_block FROM registry_history h WHERE h.challenge_id = v.challenge_id "
        "AND h.version = v.version ORDER BY h.seq DESC LIMIT 1) FROM registry_versions v"
    )
    params: list[Any] = []
    if lifecycle:
        sql += " WHERE v.state = ?"
        params.append(lifecycle)
    rows = [
        {
            "id": r[0],
            "version": r[1],
            "state": r[2],
            "module_sha256": r[3],
            "update_id": r[4],
            "updated_ms": r[5],
            "effective_block": r[6],
        }
        for r in state.execute(sql, params)
    ]
    return sorted(rows, key=lambda r: (r["id"], core.version_key(r["version"])))


def history(state: State, challenge_id: str | None = None) -> list[dict[str, Any]]:
    """The committed history in commit order (one challenge's, or all)."""
    sql = (
        "SELECT seq, challenge_id, version, previous, state, effective_block, update_id, committed_ms "
        "FROM registry_history"
    )
    params: list[Any] = []
    if challenge_id:
        sql += " WHERE challenge_id = ?"
        params.append(challenge_id)
    cursor = state.execute(sql + " ORDER BY seq", params)
    names = ["seq", "id", "version", "previous", "state", "effective_block", "update_id", "committed_ms"]
    return [dict(zip(names, row, strict=True)) for row in cursor]


def show_version(state: State, challenge_id: str, version: str | None = None) -> dict[str, Any]:
    records = registry_state(state).of(challenge_id)
    if not records:
        raise PlatformError(f"no challenge {challenge_id!r} in the registry")
    if version is None:
        chosen = next((r for r in reversed(records) if r.state is core.Lifecycle.ACTIVE), records[-1])
    else:
        chosen = next((r for r in records if r.spec.version == version), None)
        if chosen is None:
            known = ", ".join(r.spec.version for r in records)
            raise PlatformError(f"challenge {challenge_id!r} has no version {version} (known: {known})")
    return {"state": chosen.state.value, "update_id": chosen.update_id, **chosen.spec.to_canonical()}
