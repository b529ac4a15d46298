"""Key files in one folder: the embedded default, and an option for small deployments.

Each named key is one JSON file holding every version. The folder is 0700 and the files 0600; a
key folder or file that others can read is refused rather than used, since it would mean the keys
may already have leaked. Writes are atomic (temporary file, fsync, rename) and serialised between
processes by a lock file, so two processes starting together create one key, not two.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac as hmac_module
import json
import os
import secrets
import stat
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from infra.keys.base import (
    KeyBackendUnavailable,
    KeyKind,
    KeyManagementError,
    Signature,
    UnwrapFailed,
    WrappedKey,
    check_name,
    key_id,
    version_of,
)

SCHEME = "kf"
NONCE_BYTES = 12


@dataclass
class _KeyFile:
    kind: KeyKind
    versions: dict[int, bytes]
    min_version: int = 1
    stamp: tuple[int, int] = field(default=(0, 0))

    @property
    def latest(self) -> int:
        return max(self.versions)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "min_version": self.min_version,
            "versions": {str(v): base64.b64encode(k).decode() for v, k in sorted(self.versions.items())},
        }


def _new_material(kind: KeyKind) -> bytes:
    if kind is KeyKind.ecdsa_p256:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        return ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    if kind is KeyKind.ed25519:
        from cryptography.hazmat.primitives import serialization

        return Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
    return secrets.token_bytes(32)


class FileKeyBackend:
    """Versioned keys in JSON files under ``root`` (created on first use with safe permissions)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._cache: dict[str, _KeyFile] = {}

    # --- files -----------------------------------------------------------------------------------

    def _ensure_root(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            mode = self.root.stat().st_mode
        except OSError as exc:
            raise KeyBackendUnavailable(f"key folder {self.root} is not usable: {exc.strerror}") from exc
        if mode & 0o077:
            raise KeyManagementError(
                f"key folder {self.root} is accessible to other users (mode {stat.filemode(mode)}); "
                "run `chmod 700` on it after checking the keys have not been copied"
            )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._ensure_root()
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _path(self, name: str) -> Path:
        return self.root / f"{check_name(name)}.json"

    def _read(self, name: str) -> _KeyFile | None:
        path = self._path(name)
        try:
            info = path.stat()
        except FileNotFoundError:
            return None
        stamp = (info.st_mtime_ns, info.st_ino)
        cached = self._cache.get(name)
        if cached is not None and cached.stamp == stamp:
            return cached
        if info.st_mode & 0o077:
            raise KeyManagementError(
                f"key file {path} is readable by other users (mode {stat.filemode(info.st_mode)}); "
                "it is refused: fix it with `chmod 600` after checking it has not been copied"
            )
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            loaded = _KeyFile(
                kind=KeyKind(raw["kind"]),
                versions={int(v): base64.b64decode(k) for v, k in raw["versions"].items()},
                min_version=int(raw.get("min_version", 1)),
                stamp=stamp,
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyManagementError(f"key file {path} is unreadable or malformed: {exc}") from exc
        self._cache[name] = loaded
        return loaded

    def _write(self, name: str, key: _KeyFile) -> None:
        path = self._path(name)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.root)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(key.to_json(), handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._cache.pop(name, None)

    def _key(self, name: str, kind: KeyKind) -> _KeyFile:
        key = self._read(name)
        if key is None:
            with self._locked():
                key = self._read(name)
                if key is None:
                    self._write(name, _KeyFile(kind=kind, versions={1: _new_material(kind)}))
                    key = self._read(name)
        if key is None:  # pragma: no cover - the file was just written under the lock
            raise KeyBackendUnavailable(f"key {name!r} could not be created")
        if key.kind is not kind:
            raise KeyManagementError(f"key {name!r} is a {key.kind.value} key, not {kind.value}")
        return key

    # --- data keys --------------------------------------------------------------------------------

    def wrap(self, name: str, data_key: bytes, context: bytes) -> WrappedKey:
        """Encrypt a data key under the newest version (AES-256-GCM, context as associated data)."""
        key = self._key(name, KeyKind.aead)
        return self._wrap_with(key, key.latest, data_key, context)

    @staticmethod
    def _wrap_with(key: _KeyFile, version: int, data_key: bytes, context: bytes) -> WrappedKey:
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = AESGCM(key.versions[version]).encrypt(nonce, data_key, context)
        return WrappedKey(f"{SCHEME}:v{version}:{base64.b64encode(nonce + sealed).decode()}")

    def unwrap(self, name: str, wrapped: WrappedKey, context: bytes) -> bytes:
        """Decrypt a wrapped data key; UnwrapFailed names why it does not open."""
        key = self._key(name, KeyKind.aead)
        version = wrapped.version
        if not wrapped.token.startswith(f"{SCHEME}:"):
            raise UnwrapFailed("wrapped key was not made by the key-file backend")
        if version not in key.versions:
            raise UnwrapFailed(f"key {name!r} has no version {version}")
        if version < key.min_version:
            raise UnwrapFailed(f"key {name!r} version {version} is retired")
        try:
            blob = base64.b64decode(wrapped.token.split(":", 2)[2], validate=True)
            return AESGCM(key.versions[version]).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], context)
        except (InvalidTag, ValueError) as exc:
            raise UnwrapFailed("wrapped key does not open: altered, or bound to another object") from exc

    def rewrap(self, name: str, wrapped: WrappedKey, context: bytes) -> WrappedKey:
        """Move a wrapped data key to the newest version (unchanged if already there)."""
        key = self._key(name, KeyKind.aead)
        if wrapped.version == key.latest:
            return wrapped
        return self._wrap_with(key, key.latest, self.unwrap(name, wrapped, context), context)

    # --- versions ---------------------------------------------------------------------------------

    def rotate(self, name: str) -> int:
        """Add a new version of an existing key (an AEAD key is created if absent)."""
        with self._locked():
            key = self._read(name)
            if key is None:
                key = _KeyFile(kind=KeyKind.aead, versions={1: _new_material(KeyKind.aead)})
                self._write(name, key)
                return 1
            if key.kind is KeyKind.hmac:
                raise KeyManagementError(
                    f"key {name!r} is a keyed-hash key: rotating it would change pseudonyms"
                )
            version = key.latest + 1
            self._write(
                name, _KeyFile(key.kind, {**key.versions, version: _new_material(key.kind)}, key.min_version)
            )
            return version

    def latest_version(self, name: str) -> int:
        """Newest version of an AEAD key (created if absent)."""
        return self._key(name, KeyKind.aead).latest

    def retire(self, name: str, below: int) -> None:
        """Stop unwrapping with versions older than ``below``; the newest version cannot be retired."""
        with self._locked():
            key = self._read(name)
            if key is None:
                raise KeyManagementError(f"no key {name!r}")
            if below > key.latest:
                raise KeyManagementError(f"key {name!r} has no version {below}: the newest is {key.latest}")
            if below > key.min_version:
                self._write(name, _KeyFile(key.kind, key.versions, below))

    # --- signatures and keyed hashes -------------------------------------------------------------

    def sign(self, name: str, payload: bytes) -> Signature:
        """Ed25519 signature by the newest version."""
        key = self._key(name, KeyKind.ed25519)
        private = Ed25519PrivateKey.from_private_bytes(key.versions[key.latest])
        return Signature(key_id(name, key.latest), private.sign(payload))

    def public_keys(self, name: str) -> dict[str, bytes]:
        """Every version's raw public key, by key id."""
        from cryptography.hazmat.primitives import serialization

        key = self._key(name, KeyKind.ed25519)
        return {
            key_id(name, version): Ed25519PrivateKey.from_private_bytes(material)
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            for version, material in key.versions.items()
        }

    def hmac(self, name: str, data: bytes) -> bytes:
        """HMAC-SHA-256 under the key ``name``."""
        key = self._key(name, KeyKind.hmac)
        return hmac_module.new(key.versions[1], data, hashlib.sha256).digest()

    def hmac_many(self, name: str, items: Sequence[bytes]) -> list[bytes]:
        """HMAC-SHA-256 of each item, reading the key once."""
        keyed = hmac_module.new(self._key(name, KeyKind.hmac).versions[1], digestmod=hashlib.sha256)
        digests = []
        for item in items:
            state = keyed.copy()  # keyed once: each item continues from a copy of that state
            state.update(item)
            digests.append(state.digest())
        return digests

    def jws_key_id(self, name: str) -> str:
        """Key id of the newest ECDSA P-256 version."""
        key = self._key(name, KeyKind.ecdsa_p256)
        return key_id(name, key.latest)

    def sign_jws(self, name: str, key_id: str, signing_input: bytes) -> bytes:
        """ES256 signature by the version named in ``key_id``, in JWS form (raw ``r || s``)."""
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        key = self._key(name, KeyKind.ecdsa_p256)
        version = version_of(name, key_id)
        if version not in key.versions or version < key.min_version:
            raise KeyManagementError(f"key {name!r} has no usable version {version}")
        private = serialization.load_der_private_key(key.versions[version], password=None)
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        r, s = decode_dss_signature(private.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def jws_public_keys(self, name: str) -> dict[str, str]:
        """PEM public keys of the versions that are not retired."""
        from cryptography.hazmat.primitives import serialization

        key = self._key(name, KeyKind.ecdsa_p256)
        found: dict[str, str] = {}
        for version, material in key.versions.items():
            if version < key.min_version:
                continue
            public = serialization.load_der_private_key(material, password=None).public_key()
            found[key_id(name, version)] = public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ).decode()
        return found

    def check(self) -> str:
        """The folder exists with safe permissions and is writable."""
        with self._locked():
            pass
        return f"key files in {self.root}"
