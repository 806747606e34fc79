"""Compiled-module cache: in memory per process, and on disk across processes.

A disk artifact is keyed by the module's sha256 and the engine fingerprint (wasmtime
version, settings, target and CPU baseline, call-depth instrumentation). ``Module.deserialize`` trusts its input completely, so
each artifact carries an HMAC under a node-local secret: an artifact this node did not
write (copied in, truncated, tampered with) fails the check, is deleted and recompiled.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import wasmtime

log = logging.getLogger("platform.runtime.cache")

MAGIC = b"PLATFORM-CWASM/1\n"
MEMORY_ENTRIES = 64


class ModuleCache:
    def __init__(self, engine: wasmtime.Engine, fingerprint: str, directory: Path | None) -> None:
        self.engine = engine
        self.fingerprint = fingerprint
        self.directory = directory
        self._memory: OrderedDict[str, wasmtime.Module] = OrderedDict()
        self._secret: bytes | None = None
        self.stats = {
            "memory_hits": 0,
            "disk_hits": 0,
            "compiles": 0,
            "rejected_artifacts": 0,
            "write_failures": 0,
        }

    def key(self, module_sha256: str) -> str:
        return hashlib.sha256(f"{module_sha256}:{self.fingerprint}".encode()).hexdigest()

    def get(
        self, module_sha256: str, source: Callable[[], bytes], *, persist: bool = True
    ) -> wasmtime.Module:
        """The compiled module whose original bytes hash to ``module_sha256``; ``source``
        gives the bytes to compile (the instrumented module) on a miss.

        Only ``persist`` modules (challenges) go to disk: submission modules are as many
        as miners care to send, so they live in the in-memory LRU only.
        """
        key = self.key(module_sha256)
        module = self._memory.get(key)
        if module is not None:
            self._memory.move_to_end(key)
            self.stats["memory_hits"] += 1
            return module
        module = self._load(key) if persist else None
        if module is None:
            module = wasmtime.Module(self.engine, source())
            self.stats["compiles"] += 1
            if persist:
                self._store(key, module)
        self._memory[key] = module
        if len(self._memory) > MEMORY_ENTRIES:
            self._memory.popitem(last=False)
        return module

    def _secret_key(self) -> bytes:
        if self._secret is None:
            assert self.directory is not None
            path = self.directory / "secret"
            if not path.exists():
                # Written whole under a temporary name, then linked into place: concurrent
                # workers agree on one secret and never read a half-written one.
                self.directory.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f"secret.{os.getpid()}.tmp")
                try:
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    with os.fdopen(fd, "wb") as handle:
                        handle.write(secrets.token_bytes(32))
                    with contextlib.suppress(FileExistsError):
                        os.link(tmp, path)
                finally:
                    with contextlib.suppress(OSError):
                        tmp.unlink(missing_ok=True)
            self._secret = path.read_bytes()
        return self._secret

    def _mac(self, key: str, artifact: bytes) -> bytes:
        return hmac.new(self._secret_key(), key.encode() + artifact, hashlib.sha256).digest()

    def _load(self, key: str) -> wasmtime.Module | None:
        if self.directory is None:
            return None
        path = self.directory / f"{key}.cwasm"
        try:
            blob = path.read_bytes()
            mac, artifact = blob[len(MAGIC) : len(MAGIC) + 32], blob[len(MAGIC) + 32 :]
            expected = self._mac(key, artifact)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("event=cache_unreadable key=%s error=%r", key[:16], exc.strerror or str(exc))
            return None
        if not blob.startswith(MAGIC) or not hmac.compare_digest(mac, expected):
            log.warning("event=cache_reject key=%s reason=integrity", key[:16])
            self.stats["rejected_artifacts"] += 1
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
            return None
        self.stats["disk_hits"] += 1
        return wasmtime.Module.deserialize(self.engine, artifact)

    def _store(self, key: str, module: wasmtime.Module) -> None:
        """Write the artifact; a failed write (disk full, read-only) only costs the caching."""
        if self.directory is None:
            return
        artifact = module.serialize()
        path = self.directory / f"{key}.cwasm"
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            blob = MAGIC + self._mac(key, artifact) + artifact
            tmp.write_bytes(blob)
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("event=cache_write_failed key=%s error=%r", key[:16], exc.strerror or str(exc))
            self.stats["write_failures"] += 1
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
