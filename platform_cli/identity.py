"""Identities: signing keys on disk and signature verification for both schemes.

sr25519 keys go through ``bittensor_core``, the native binding behind bittensor's
``bittensor.sp_core.Keypair`` (what real wallets hold), imported directly so that
verification does not pay for importing the whole SDK. ed25519 keys go through PyNaCl.
Both use the same ss58 addresses (Substrate generic format 42).

A key file ``<data-dir>/keys/NAME.json`` is created with mode 0600 and holds the secret;
nothing here ever prints it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from platform_cli.errors import PlatformError, UsageError

SCHEMES = ("sr25519", "ed25519")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def verify_signature(scheme: str, ss58: str, message: bytes, signature: bytes) -> bool:
    """True only when ``signature`` is ``ss58``'s valid signature of ``message``."""
    import bittensor_core

    try:
        if scheme == "sr25519":
            return bool(bittensor_core.verify(message, signature, ss58, bittensor_core.CRYPTO_SR25519))
        if scheme == "ed25519":
            from nacl.exceptions import BadSignatureError
            from nacl.signing import VerifyKey

            try:
                VerifyKey(bytes(bittensor_core.ss58_decode(ss58))).verify(message, signature)
            except BadSignatureError:
                return False
            return True
    except (ValueError, TypeError):
        return False
    return False


def is_ss58(address: str) -> bool:
    import bittensor_core

    try:
        bittensor_core.ss58_decode(address)
    except (ValueError, TypeError):
        return False
    return True


@dataclass(frozen=True)
class PublicIdentity:
    name: str
    scheme: str
    ss58: str
    source: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "scheme": self.scheme, "ss58": self.ss58, "source": self.source}


class Signer:
    """A loaded secret key. ``sign`` returns a 64-byte signature."""

    def __init__(self, identity: PublicIdentity, secret: Any) -> None:
        self.identity = identity
        self._secret = secret

    @property
    def ss58(self) -> str:
        return self.identity.ss58

    @property
    def scheme(self) -> str:
        return self.identity.scheme

    def sign(self, message: bytes) -> bytes:
        if self.scheme == "ed25519":
            return bytes(self._secret.sign(message).signature)
        return bytes(self._secret.sign(message))

    def __repr__(self) -> str:
        return f"Signer({self.identity.name!r}, {self.scheme}, {self.ss58})"


def _sr25519_from_keyfile(data: str) -> Any:
    import bittensor_core

    return bittensor_core.deserialize_keypair_from_keyfile_data(data.encode())


def _ed25519_from_seed(seed_hex: str) -> Any:
    from nacl.signing import SigningKey

    return SigningKey(bytes.fromhex(seed_hex))


class KeyStore:
    """Key files under ``<data-dir>/keys``."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "keys"

    def path(self, name: str) -> Path:
        if not _NAME_RE.match(name):
            raise UsageError(f"key name {name!r} is invalid: use letters, digits, '.', '_' or '-' (max 64)")
        return self.root / f"{name}.json"

    def new(self, name: str, scheme: str) -> PublicIdentity:
        if scheme == "sr25519":
            import bittensor_core

            keypair = bittensor_core.Keypair.create_from_mnemonic(bittensor_core.Keypair.generate_mnemonic())
            secret = {"keyfile": bittensor_core.serialized_keypair_to_keyfile_data(keypair).decode()}
            ss58 = keypair.ss58_address
        elif scheme == "ed25519":
            import bittensor_core
            from nacl.signing import SigningKey

            key = SigningKey.generate()
            secret = {"seed": bytes(key).hex()}
            ss58 = bittensor_core.ss58_encode(bytes(key.verify_key))
        else:
            raise UsageError(f"scheme {scheme!r} is not one of {', '.join(SCHEMES)}")
        return self._write(PublicIdentity(name, scheme, ss58, "generated"), secret)

    def import_wallet(self, name: str, wallet: str, hotkey: str, wallet_path: str | None) -> PublicIdentity:
        """Copy a Bittensor wallet hotkey, read with the bittensor SDK."""
        self.path(name)
        import bittensor
        import bittensor_core

        kwargs = {"name": wallet, "hotkey": hotkey}
        if wallet_path:
            kwargs["path"] = str(Path(wallet_path).expanduser())
        try:
            keypair = bittensor.Wallet(**kwargs).hotkey
        except Exception as exc:  # the SDK raises several types for a missing or bad file
            raise PlatformError(f"cannot read hotkey {hotkey!r} of wallet {wallet!r}: {exc}") from None
        scheme = "ed25519" if keypair.crypto_type == bittensor_core.CRYPTO_ED25519 else "sr25519"
        if scheme == "ed25519":
            raise PlatformError(
                f"hotkey {hotkey!r} of wallet {wallet!r} is ed25519; import supports sr25519 hotkeys"
            )
        secret = {"keyfile": bittensor_core.serialized_keypair_to_keyfile_data(keypair).decode()}
        return self._write(
            PublicIdentity(name, scheme, keypair.ss58_address, f"wallet:{wallet}/{hotkey}"), secret
        )

    def _write(self, identity: PublicIdentity, secret: dict[str, str]) -> PublicIdentity:
        path = self.path(identity.name)
        if path.exists():
            raise PlatformError(f"key {identity.name!r} already exists at {path}")
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        document = json.dumps({**identity.to_json(), "secret": secret}, indent=2).encode()
        tmp = path.with_suffix(".json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, document)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)  # fails if the name was taken meanwhile: never overwrite a key
        os.unlink(tmp)
        return identity

    def _read(self, name: str) -> dict[str, Any]:
        path = self.path(name)
        try:
            document = json.loads(path.read_text())
        except FileNotFoundError:
            raise PlatformError(
                f"no key named {name!r} (looked for {path}); see 'platform keys list'"
            ) from None
        except (OSError, json.JSONDecodeError) as exc:
            raise PlatformError(f"key file {path} is unreadable: {exc}") from None
        if not isinstance(document, dict) or document.get("scheme") not in SCHEMES:
            raise PlatformError(f"key file {path} is not a platform key file")
        return document

    def show(self, name: str) -> PublicIdentity:
        doc = self._read(name)
        return PublicIdentity(name, doc["scheme"], doc["ss58"], doc.get("source", ""))

    def list(self) -> list[PublicIdentity]:
        if not self.root.is_dir():
            return []
        return [self.show(path.stem) for path in sorted(self.root.glob("*.json"))]

    def signer(self, name: str) -> Signer:
        doc = self._read(name)
        identity = PublicIdentity(name, doc["scheme"], doc["ss58"], doc.get("source", ""))
        try:
            if identity.scheme == "sr25519":
                secret = _sr25519_from_keyfile(doc["secret"]["keyfile"])
                derived = secret.ss58_address
            else:
                import bittensor_core

                secret = _ed25519_from_seed(doc["secret"]["seed"])
                derived = bittensor_core.ss58_encode(bytes(secret.verify_key))
        except (KeyError, TypeError, ValueError) as exc:
            raise PlatformError(f"key file {self.path(name)} holds no usable secret: {exc}") from None
        if derived != identity.ss58:
            raise PlatformError(f"key file {self.path(name)}: secret does not match address {identity.ss58}")
        return Signer(identity, secret)
