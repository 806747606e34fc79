"""Identities: signing keys on disk and signature verification for both schemes.

sr25519 keys go through ``bittensor_core``, the native binding behind bittensor's
``bittensor.sp_core.Keypair`` (what real wallets hold), imported directly so that
verification does not pay for importing the whole SDK. ed25519 keys go through PyNaCl.
Both use the same ss58 addresses (Substrate generic format 42).

A key file ``<data-dir>/keys/NAME.json`` is created with mode 0600 and holds the secret;
nothing here ever prints it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from platform_cli import files
from platform_cli.errors import PlatformError, UsageError

log = logging.getLogger("platform.keys")

SCHEMES = ("sr25519", "ed25519")
KEY_FILE_MAX_BYTES = 64 * 1024
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


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


_TMP_RE = re.compile(r"\.(?P<name>.+\.json)\.[0-9a-f]{16}\.tmp")
"""The temporary name of a key file being written (see :meth:`KeyStore._link_new`)."""


def _same_file(root: int, first: str, second: str) -> bool:
    try:
        a = os.stat(first, dir_fd=root, follow_symlinks=False)
        b = os.stat(second, dir_fd=root, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


class KeyStore:
    """Key files under ``<data-dir>/keys``, handled as ssh handles ``~/.ssh``.

    The directory must be a real directory (not a symlink) owned by this user and not
    writable by group or others; everything inside is reached through its descriptor,
    so no symlink swapped in along the way is followed. A key file is written once: to a
    temporary file of a unique name (``O_EXCL | O_NOFOLLOW``, mode 0600), fsynced, then
    hard-linked to ``NAME.json``, which fails if the name exists: of several processes
    creating one name, exactly one wins and its file holds the key it reports.

    The temporary name stays until the audit entry is committed, and writers hold an
    exclusive ``flock`` on the directory, so a writer killed part-way leaves a trace the
    next writer resolves under the same lock: a key linked but never recorded is removed
    (both or neither), a recorded one kept, and the temporary name goes either way.
    """

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "keys"

    def path(self, name: str) -> Path:
        if not _NAME_RE.fullmatch(name):
            raise UsageError(f"key name {name!r} is invalid: use letters, digits, '.', '_' or '-' (max 64)")
        return self.root / f"{name}.json"

    def new(
        self,
        name: str,
        scheme: str,
        record: Callable[[PublicIdentity], None] | None = None,
        recorded: Callable[[str], bool] | None = None,
    ) -> PublicIdentity:
        """Generate a key; ``record`` (the audit entry) runs once the file is in place.

        If ``record`` fails, the key file is removed again: both or neither.
        """
        self.path(name)
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
        return self._write(PublicIdentity(name, scheme, ss58, "generated"), secret, record, recorded)

    def import_wallet(
        self,
        name: str,
        wallet: str,
        hotkey: str,
        wallet_path: str | None,
        record: Callable[[PublicIdentity], None] | None = None,
        recorded: Callable[[str], bool] | None = None,
    ) -> PublicIdentity:
        """Copy a Bittensor wallet hotkey (found and, if encrypted, unlocked by the SDK)."""
        self.path(name)
        import bittensor
        import bittensor_core

        kwargs = {"name": wallet, "hotkey": hotkey}
        if wallet_path:
            kwargs["path"] = str(Path(wallet_path).expanduser())
        where = f"hotkey {hotkey!r} of wallet {wallet!r}"
        try:
            keyfile = bittensor.Wallet(**kwargs).hotkey_file
            data = files.read_limited(keyfile.path, KEY_FILE_MAX_BYTES, "hotkey file")
            if bittensor_core.keyfile_data_is_encrypted(data):
                keypair = keyfile.get_keypair()
            else:
                keypair = bittensor_core.deserialize_keypair_from_keyfile_data(data)
        except Exception as exc:  # ours for a bad file; the SDK's several types for a bad key or password
            raise PlatformError(f"cannot read {where}: {exc}") from None
        scheme = "ed25519" if keypair.crypto_type == bittensor_core.CRYPTO_ED25519 else "sr25519"
        if scheme == "ed25519":
            raise PlatformError(f"{where} is ed25519; import supports sr25519 hotkeys")
        secret = {"keyfile": bittensor_core.serialized_keypair_to_keyfile_data(keypair).decode()}
        return self._write(
            PublicIdentity(name, scheme, keypair.ss58_address, f"wallet:{wallet}/{hotkey}"),
            secret,
            record,
            recorded,
        )

    def _write(
        self,
        identity: PublicIdentity,
        secret: dict[str, str],
        record: Callable[[PublicIdentity], None] | None,
        recorded: Callable[[str], bool] | None,
    ) -> PublicIdentity:
        """Write the key, then ``record`` it; ``recorded(ss58)`` tells whether a key a killed
        writer left behind was recorded (see the class docstring)."""
        path = self.path(identity.name)
        document = json.dumps({**identity.to_json(), "secret": secret}, indent=2).encode()
        root = self._create_root()
        try:
            fcntl.flock(root, fcntl.LOCK_EX)  # released by close, or by the kernel on a kill
            self._recover(root, recorded)
            tmp = self._link_new(root, path, document)
            try:
                if record is not None:
                    record(identity)
            except BaseException:
                os.unlink(path.name, dir_fd=root)
                raise
            finally:
                os.unlink(tmp, dir_fd=root)
                os.fsync(root)
        finally:
            os.close(root)
        return identity

    def _recover(self, root: int, recorded: Callable[[str], bool] | None) -> None:
        """Resolve what writers killed part-way left (called with the directory locked)."""
        for entry in os.listdir(root):
            match = _TMP_RE.fullmatch(entry)
            if match is None:
                continue
            linked = _same_file(root, entry, match["name"])
            if linked and recorded is not None:
                try:
                    ss58 = json.loads(
                        files.read_regular(
                            entry, KEY_FILE_MAX_BYTES, "key file", dir_fd=root, shown=self.root / entry
                        )[0]
                    )["ss58"]
                except (PlatformError, ValueError, KeyError, TypeError):
                    ss58 = None
                if ss58 is None or not recorded(ss58):
                    log.warning("keys.recover removed=%s reason=never recorded", match["name"])
                    os.unlink(match["name"], dir_fd=root)
            os.unlink(entry, dir_fd=root)
            os.fsync(root)

    def _link_new(self, root: int, path: Path, document: bytes) -> str:
        """Create ``path`` (in the directory ``root``) holding ``document``, never replacing a
        file; returns the temporary name, still linked, for the caller to remove."""
        tmp = f".{path.name}.{secrets.token_hex(8)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(tmp, flags, 0o600, dir_fd=root)
        except OSError as exc:  # name the directory, not a path relative to its descriptor
            raise OSError(exc.errno, exc.strerror, str(self.root)) from None
        try:
            try:
                with os.fdopen(fd, "wb", closefd=False) as handle:
                    handle.write(document)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path.name, src_dir_fd=root, dst_dir_fd=root, follow_symlinks=False)
            except FileExistsError:
                raise PlatformError(f"key {path.stem!r} already exists at {path}") from None
            os.fsync(root)
        except BaseException:
            os.unlink(tmp, dir_fd=root)
            raise
        return tmp

    def _create_root(self) -> int:
        """A descriptor of ``keys/``, created (mode 0700) if absent; checked as :meth:`_open_root`."""
        self.root.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(self.root, 0o700)
        root = self._open_root()
        if root is None:
            raise PlatformError(f"keys directory {self.root} vanished while it was being created")
        return root

    def _open_root(self) -> int | None:
        """A descriptor of ``keys/`` (``None`` if absent), refusing what ssh refuses for ``~/.ssh``."""
        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR) and self.root.is_symlink():
                raise PlatformError(
                    f"keys directory {self.root} is a symbolic link: refusing to use it"
                ) from None
            if exc.errno == errno.ENOTDIR:
                raise PlatformError(f"keys directory {self.root} is not a directory") from None
            raise PlatformError(f"cannot open keys directory {self.root}: {exc.strerror}") from None
        info = os.fstat(fd)
        problem = None
        if info.st_uid != os.geteuid():
            problem = f"is owned by uid {info.st_uid}, not by this user (uid {os.geteuid()})"
        elif info.st_mode & 0o022:
            problem = f"is writable by group or others (mode {stat.S_IMODE(info.st_mode):04o}): chmod 700 it"
        if problem:
            os.close(fd)
            raise PlatformError(f"keys directory {self.root} {problem}")
        return fd

    def _read(self, name: str, *, secret: bool = False) -> dict[str, Any]:
        path = self.path(name)
        root = self._open_root()
        if root is None:
            raise PlatformError(f"no key named {name!r} (looked for {path}); see 'platform keys list'")
        try:
            data, info = files.read_regular(
                path.name, KEY_FILE_MAX_BYTES, "key file", dir_fd=root, shown=path
            )
        except PlatformError as exc:
            if not os.path.lexists(path):
                raise PlatformError(
                    f"no key named {name!r} (looked for {path}); see 'platform keys list'"
                ) from None
            raise exc from None
        finally:
            os.close(root)
        if secret and info.st_mode & 0o077:
            raise PlatformError(
                f"key file {path} is open to others (mode {stat.S_IMODE(info.st_mode):04o}): chmod 600 it"
            )
        try:
            document = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise PlatformError(f"key file {path} is unreadable: {exc}") from None
        if (
            not isinstance(document, dict)
            or document.get("scheme") not in SCHEMES
            or not isinstance(document.get("ss58"), str)
            or not isinstance(document.get("source", ""), str)
        ):
            raise PlatformError(f"key file {path} is not a platform key file")
        return document

    def show(self, name: str) -> PublicIdentity:
        doc = self._read(name)
        return PublicIdentity(name, doc["scheme"], doc["ss58"], doc.get("source", ""))

    def scan(self) -> tuple[list[PublicIdentity], list[tuple[str, PlatformError]]]:
        """The healthy keys, and each broken key file's name with what is wrong with it."""
        root = self._open_root()
        if root is None:
            return [], []
        try:
            names = sorted(entry[: -len(".json")] for entry in os.listdir(root) if entry.endswith(".json"))
        finally:
            os.close(root)
        found: list[PublicIdentity] = []
        broken: list[tuple[str, PlatformError]] = []
        for name in names:
            try:
                found.append(self.show(name))
            except PlatformError as exc:
                broken.append((name, exc))
        return found, broken

    def signer(self, name: str) -> Signer:
        doc = self._read(name, secret=True)
        identity = PublicIdentity(name, doc["scheme"], doc["ss58"], doc.get("source", ""))
        import bittensor_core

        try:
            if identity.scheme == "sr25519":
                secret = _sr25519_from_keyfile(doc["secret"]["keyfile"])
                derived = secret.ss58_address
            else:
                secret = _ed25519_from_seed(doc["secret"]["seed"])
                derived = bittensor_core.ss58_encode(bytes(secret.verify_key))
        except (KeyError, TypeError, ValueError, AttributeError, bittensor_core.KeyfileError) as exc:
            raise PlatformError(f"key file {self.path(name)} holds no usable secret: {exc}") from None
        if derived != identity.ss58:
            raise PlatformError(f"key file {self.path(name)}: secret does not match address {identity.ss58}")
        return Signer(identity, secret)
