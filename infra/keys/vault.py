"""Vault/OpenBao transit backend: keys never leave the server; it wraps, signs and hashes for us.

AEAD keys are ``aes256-gcm96`` transit keys with key derivation: each context (dataset, version,
object) gets its own derived key, so a wrapped key opens only in its own context, and transit's
rewrap (which has no associated-data parameter) keeps that binding. Signing keys are ``ed25519``;
token-signing keys are ``ecdsa-p256`` with signatures marshalled as JWS; keyed-hash keys are
AEAD-type transit keys used only through the HMAC endpoint at version 1 (never rotated, so
pseudonyms stay stable). Keys are created on first use.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

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
from infra.settings import Settings

_TRANSIT_TYPES = {
    KeyKind.aead: "aes256-gcm96",
    KeyKind.ed25519: "ed25519",
    KeyKind.hmac: "aes256-gcm96",
    KeyKind.ecdsa_p256: "ecdsa-p256",
}


HMAC_BATCH = 200
"""Values hashed per transit call by ``hmac_many`` (the server limits the strings in one request)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class VaultKeyBackend:
    """Keys held by a Vault or OpenBao transit engine, reached with ``hvac``."""

    def __init__(
        self,
        addr: str,
        token: str,
        *,
        mount: str = "transit",
        verify: bool | str = True,
        timeout: float = 10.0,
    ) -> None:
        import hvac

        self.addr = addr
        self.mount = mount
        self._client = hvac.Client(url=addr, token=token, verify=verify, timeout=timeout)
        self._known: dict[str, KeyKind] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> VaultKeyBackend:
        """Build from ``ENCLAVE_VAULT_*`` settings."""
        verify: bool | str = str(settings.vault_ca_bundle) if settings.vault_ca_bundle else True
        return cls(
            settings.vault_addr,
            settings.vault_token.get_secret_value(),
            mount=settings.vault_transit_mount,
            verify=verify,
        )

    @property
    def _transit(self) -> Any:
        return self._client.secrets.transit

    @contextlib.contextmanager
    def _calls(self, what: str) -> Iterator[None]:
        """Map transport and permission failures to the product's errors."""
        import hvac.exceptions
        import requests

        try:
            yield
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise KeyBackendUnavailable(
                f"key backend at {self.addr} unreachable while trying to {what}"
            ) from exc
        except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized) as exc:
            raise KeyBackendUnavailable(
                f"key backend at {self.addr} refused the token while trying to {what}: "
                "check ENCLAVE_VAULT_TOKEN and its policy on the transit mount"
            ) from exc
        except (
            hvac.exceptions.VaultDown,
            hvac.exceptions.InternalServerError,
            hvac.exceptions.BadGateway,
        ) as exc:
            raise KeyBackendUnavailable(f"key backend at {self.addr} failed while trying to {what}") from exc

    def _ensure(self, name: str, kind: KeyKind) -> None:
        check_name(name)
        if self._known.get(name) is kind:
            return
        import hvac.exceptions

        with self._calls(f"read key {name!r}"):
            try:
                data = self._transit.read_key(name, mount_point=self.mount)["data"]
            except hvac.exceptions.InvalidPath:
                self._transit.create_key(
                    name, key_type=_TRANSIT_TYPES[kind], derived=kind is KeyKind.aead, mount_point=self.mount
                )
                data = self._transit.read_key(name, mount_point=self.mount)["data"]
        if data["type"] != _TRANSIT_TYPES[kind]:
            raise KeyManagementError(
                f"transit key {name!r} is of type {data['type']}, not {_TRANSIT_TYPES[kind]}"
            )
        self._known[name] = kind

    def wrap(self, name: str, data_key: bytes, context: bytes) -> WrappedKey:
        """Encrypt a data key in transit, bound to ``context``."""
        self._ensure(name, KeyKind.aead)
        with self._calls(f"wrap with {name!r}"):
            answer = self._transit.encrypt_data(
                name, plaintext=_b64(data_key), context=_b64(context), mount_point=self.mount
            )
        return WrappedKey(str(answer["data"]["ciphertext"]))

    def unwrap(self, name: str, wrapped: WrappedKey, context: bytes) -> bytes:
        """Decrypt a wrapped data key in transit."""
        import hvac.exceptions

        self._ensure(name, KeyKind.aead)
        wrapped.version  # noqa: B018 - refuses a malformed token before it reaches the server
        with self._calls(f"unwrap with {name!r}"):
            try:
                answer = self._transit.decrypt_data(
                    name, ciphertext=wrapped.token, context=_b64(context), mount_point=self.mount
                )
            except hvac.exceptions.InvalidRequest as exc:
                raise UnwrapFailed(f"wrapped key does not open with {name!r}: {exc.errors or exc}") from exc
        return base64.b64decode(answer["data"]["plaintext"])

    def rewrap(self, name: str, wrapped: WrappedKey, context: bytes) -> WrappedKey:
        """Rewrap under the newest version inside transit: the data key never comes out."""
        import hvac.exceptions

        self._ensure(name, KeyKind.aead)
        with self._calls(f"rewrap with {name!r}"):
            try:
                answer = self._transit.rewrap_data(
                    name, ciphertext=wrapped.token, context=_b64(context), mount_point=self.mount
                )
            except hvac.exceptions.InvalidRequest as exc:
                raise UnwrapFailed(f"wrapped key does not rewrap with {name!r}: {exc.errors or exc}") from exc
        return WrappedKey(str(answer["data"]["ciphertext"]))

    def rotate(self, name: str) -> int:
        """Rotate the transit key; return the new version."""
        self._ensure(name, self._known.get(name) or self._kind_on_server(name))
        if self._known[name] is KeyKind.hmac:
            raise KeyManagementError(f"key {name!r} is a keyed-hash key: rotating it would change pseudonyms")
        with self._calls(f"rotate {name!r}"):
            self._transit.rotate_key(name, mount_point=self.mount)
        return self.latest_version(name)

    def _kind_on_server(self, name: str) -> KeyKind:
        # A key first touched by ``rotate`` in this process: take its kind from the server, so a
        # signing key is not mistaken for a key-encryption key (absent keys are created as AEAD).
        import hvac.exceptions

        check_name(name)
        with self._calls(f"read key {name!r}"):
            try:
                key_type = self._transit.read_key(name, mount_point=self.mount)["data"]["type"]
            except hvac.exceptions.InvalidPath:
                return KeyKind.aead
        for kind in (KeyKind.ecdsa_p256, KeyKind.ed25519):
            if _TRANSIT_TYPES[kind] == key_type:
                return kind
        return KeyKind.aead

    def latest_version(self, name: str) -> int:
        """The newest version of the transit key."""
        self._ensure(name, self._known.get(name, KeyKind.aead))
        with self._calls(f"read key {name!r}"):
            return int(self._transit.read_key(name, mount_point=self.mount)["data"]["latest_version"])

    def retire(self, name: str, below: int) -> None:
        """Set the key's minimum decryption version."""
        latest = self.latest_version(name)
        if below > latest:
            raise KeyManagementError(f"key {name!r} has no version {below}: the newest is {latest}")
        with self._calls(f"retire versions of {name!r}"):
            self._transit.update_key_configuration(name, min_decryption_version=below, mount_point=self.mount)

    def sign(self, name: str, payload: bytes) -> Signature:
        """Ed25519 signature made inside transit."""
        self._ensure(name, KeyKind.ed25519)
        with self._calls(f"sign with {name!r}"):
            answer = self._transit.sign_data(name, hash_input=_b64(payload), mount_point=self.mount)
        _, version, signature = str(answer["data"]["signature"]).split(":", 2)
        return Signature(key_id(name, int(version[1:])), base64.b64decode(signature))

    def public_keys(self, name: str) -> dict[str, bytes]:
        """Raw public keys of every version of the transit signing key."""
        self._ensure(name, KeyKind.ed25519)
        with self._calls(f"read key {name!r}"):
            keys = self._transit.read_key(name, mount_point=self.mount)["data"]["keys"]
        return {key_id(name, int(v)): base64.b64decode(k["public_key"]) for v, k in keys.items()}

    def hmac(self, name: str, data: bytes) -> bytes:
        """HMAC-SHA-256 computed by transit at key version 1."""
        self._ensure(name, KeyKind.hmac)
        with self._calls(f"hash with {name!r}"):
            answer = self._transit.generate_hmac(
                name, hash_input=_b64(data), key_version=1, algorithm="sha2-256", mount_point=self.mount
            )
        return base64.b64decode(str(answer["data"]["hmac"]).split(":", 2)[2])

    def hmac_many(self, name: str, items: Sequence[bytes]) -> list[bytes]:
        """HMAC-SHA-256 of each item by transit, in batches (``batch_input``) of ``HMAC_BATCH``."""
        self._ensure(name, KeyKind.hmac)
        digests: list[bytes] = []
        for start in range(0, len(items), HMAC_BATCH):
            batch = [{"input": _b64(item)} for item in items[start : start + HMAC_BATCH]]
            with self._calls(f"hash with {name!r}"):
                answer = self._client.adapter.post(
                    f"/v1/{self.mount}/hmac/{name}/sha2-256", json={"batch_input": batch, "key_version": 1}
                )
            results = answer["data"]["batch_results"]
            if any("error" in result for result in results):
                raise KeyManagementError(f"transit refused to hash with {name!r}")
            digests += [base64.b64decode(str(r["hmac"]).split(":", 2)[2]) for r in results]
        return digests

    def _read_signing_key(self, name: str) -> dict[str, Any]:
        self._ensure(name, KeyKind.ecdsa_p256)
        with self._calls(f"read key {name!r}"):
            data: dict[str, Any] = self._transit.read_key(name, mount_point=self.mount)["data"]
        return data

    def jws_key_id(self, name: str) -> str:
        """Key id of the newest version of the transit ECDSA key."""
        return key_id(name, int(self._read_signing_key(name)["latest_version"]))

    def sign_jws(self, name: str, key_id: str, signing_input: bytes) -> bytes:
        """ES256 signature made inside transit, marshalled as JWS (raw ``r || s``)."""
        import hvac.exceptions

        self._ensure(name, KeyKind.ecdsa_p256)
        version = version_of(name, key_id)
        with self._calls(f"sign with {name!r}"):
            try:
                answer = self._transit.sign_data(
                    name,
                    hash_input=_b64(signing_input),
                    key_version=version,
                    hash_algorithm="sha2-256",
                    marshaling_algorithm="jws",
                    mount_point=self.mount,
                )
            except hvac.exceptions.InvalidRequest as exc:
                raise KeyManagementError(
                    f"transit refused to sign with {key_id!r}: {exc.errors or exc}"
                ) from exc
        encoded = str(answer["data"]["signature"]).split(":", 2)[2]
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))

    def jws_public_keys(self, name: str) -> dict[str, str]:
        """PEM public keys of the transit ECDSA key's versions that are not retired."""
        data = self._read_signing_key(name)
        minimum = int(data.get("min_decryption_version") or 1)
        return {
            key_id(name, int(v)): str(k["public_key"]) for v, k in data["keys"].items() if int(v) >= minimum
        }

    def check(self) -> str:
        """The server answers, is unsealed, and the token may use the transit mount."""
        with self._calls("check the server"):
            if self._client.sys.is_sealed():
                raise KeyBackendUnavailable(f"key backend at {self.addr} is sealed")
            self._transit.list_keys(mount_point=self.mount)
        return f"vault transit at {self.addr} (mount {self.mount})"
