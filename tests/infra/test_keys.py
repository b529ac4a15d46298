"""Both key backends, the key-file folder and a real OpenBao transit engine, keep the same promises."""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
import sys

import pytest

from infra.keys import (
    FileKeyBackend,
    KeyBackend,
    KeyBackendUnavailable,
    KeyManagementError,
    UnwrapFailed,
    WrappedKey,
    key_backend_from_settings,
    verify_signature,
)
from infra.keys.vault import VaultKeyBackend
from infra.settings import load_settings


@pytest.fixture(params=["file", "vault"])
def backend(request, tmp_path) -> KeyBackend:
    if request.param == "file":
        return FileKeyBackend(tmp_path / "keys")
    server = request.getfixturevalue("openbao")
    return VaultKeyBackend(server.addr, server.token)


def _name(prefix: str) -> str:
    # Transit keys live for the whole session: each test uses fresh names.
    return f"{prefix}-{secrets.token_hex(4)}"


def test_wrapped_data_key_opens_only_in_its_own_context(backend):
    kek, data_key = _name("kek"), secrets.token_bytes(32)
    wrapped = backend.wrap(kek, data_key, b"dataset=d1;version=1;object=part-0")
    assert data_key.hex() not in wrapped.token
    assert backend.unwrap(kek, wrapped, b"dataset=d1;version=1;object=part-0") == data_key
    with pytest.raises(UnwrapFailed):
        backend.unwrap(kek, wrapped, b"dataset=d1;version=2;object=part-0")


def test_altered_wrapped_key_is_refused(backend):
    kek = _name("kek")
    token = backend.wrap(kek, secrets.token_bytes(32), b"ctx").token
    prefix, body = token.rsplit(":", 1)
    flipped = body[:10] + ("A" if body[10] != "A" else "B") + body[11:]
    with pytest.raises(UnwrapFailed):
        backend.unwrap(kek, WrappedKey(f"{prefix}:{flipped}"), b"ctx")
    with pytest.raises(UnwrapFailed):
        backend.unwrap(kek, WrappedKey("not-a-wrapped-key"), b"ctx")


def test_rotation_rewraps_without_changing_the_data_key_and_retired_versions_stop_opening(backend):
    kek, data_key = _name("kek"), secrets.token_bytes(32)
    old = backend.wrap(kek, data_key, b"ctx")
    assert old.version == 1
    assert backend.rotate(kek) == 2
    assert backend.latest_version(kek) == 2
    assert backend.unwrap(kek, old, b"ctx") == data_key  # old version still opens until retired
    new = backend.rewrap(kek, old, b"ctx")
    assert new.version == 2
    assert backend.wrap(kek, data_key, b"ctx").version == 2
    backend.retire(kek, 2)
    assert backend.unwrap(kek, new, b"ctx") == data_key
    with pytest.raises(UnwrapFailed):
        backend.unwrap(kek, old, b"ctx")
    with pytest.raises(KeyManagementError):
        backend.retire(kek, 3)


def test_signatures_verify_with_published_keys_of_every_version(backend):
    name = _name("sign")
    first = backend.sign(name, b"checkpoint 1")
    assert first.key_id == f"{name}:v1"
    public = backend.public_keys(name)
    assert verify_signature(public[first.key_id], b"checkpoint 1", first.signature)
    assert not verify_signature(public[first.key_id], b"checkpoint 2", first.signature)
    backend.rotate(name)
    second = backend.sign(name, b"checkpoint 2")
    assert second.key_id == f"{name}:v2"
    public = backend.public_keys(name)
    assert verify_signature(public[first.key_id], b"checkpoint 1", first.signature)
    assert verify_signature(public[second.key_id], b"checkpoint 2", second.signature)


def test_keyed_hashes_are_stable_per_domain_and_differ_between_domains(backend):
    one, two = _name("domain"), _name("domain")
    assert backend.hmac(one, b"student-42") == backend.hmac(one, b"student-42")
    assert len(backend.hmac(one, b"student-42")) == 32
    assert backend.hmac(one, b"student-42") != backend.hmac(one, b"student-43")
    assert backend.hmac(one, b"student-42") != backend.hmac(two, b"student-42")
    with pytest.raises(KeyManagementError):
        backend.rotate(one)


def test_a_key_used_for_one_purpose_is_refused_for_another(backend):
    name = _name("kek")
    backend.wrap(name, secrets.token_bytes(32), b"ctx")
    with pytest.raises(KeyManagementError):
        backend.sign(name, b"x")


def test_invalid_key_names_are_refused(backend):
    with pytest.raises(KeyManagementError):
        backend.wrap("../escape", b"k" * 32, b"ctx")


def test_backend_reports_itself_ready(backend):
    assert backend.check()


def test_key_files_are_created_private_on_first_run(tmp_path):
    keys = FileKeyBackend(tmp_path / "keys")
    keys.wrap("kek", secrets.token_bytes(32), b"ctx")
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "keys" / "kek.json").stat().st_mode) == 0o600
    # A second process (or restart) reads the same key.
    wrapped = keys.wrap("kek", b"k" * 32, b"ctx")
    assert FileKeyBackend(tmp_path / "keys").unwrap("kek", wrapped, b"ctx") == b"k" * 32


def test_key_file_readable_by_others_is_refused(tmp_path):
    keys = FileKeyBackend(tmp_path / "keys")
    keys.sign("sign", b"x")
    os.chmod(tmp_path / "keys" / "sign.json", 0o644)
    with pytest.raises(KeyManagementError, match="readable by other users"):
        FileKeyBackend(tmp_path / "keys").sign("sign", b"x")


def test_key_folder_open_to_others_is_refused(tmp_path):
    (tmp_path / "keys").mkdir(mode=0o755)
    os.chmod(tmp_path / "keys", 0o755)
    with pytest.raises(KeyManagementError, match="accessible to other users"):
        FileKeyBackend(tmp_path / "keys").check()


def test_processes_starting_together_create_one_key(tmp_path):
    script = (
        "import sys; from pathlib import Path; from infra.keys import FileKeyBackend;"
        "print(FileKeyBackend(Path(sys.argv[1])).public_keys('sign')['sign:v1'].hex())"
    )
    runs = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "keys")], stdout=subprocess.PIPE)
        for _ in range(4)
    ]
    outputs = {run.communicate(timeout=60)[0] for run in runs}
    assert len(outputs) == 1
    assert all(run.returncode == 0 for run in runs)


def test_wrong_vault_token_is_a_clear_unavailable_error(openbao):
    keys = VaultKeyBackend(openbao.addr, "not-the-token")
    with pytest.raises(KeyBackendUnavailable, match="refused the token"):
        keys.wrap(_name("kek"), b"k" * 32, b"ctx")


def test_unreachable_vault_is_a_clear_unavailable_error():
    from tests.support.processes import free_port

    keys = VaultKeyBackend(f"http://127.0.0.1:{free_port()}", "token", timeout=2)
    with pytest.raises(KeyBackendUnavailable, match="unreachable") as caught:
        keys.check()
    assert caught.value.retryable


def test_settings_choose_the_backend(tmp_path, openbao):
    file_settings = load_settings(environment="test", data_dir=tmp_path)
    assert isinstance(key_backend_from_settings(file_settings), FileKeyBackend)
    vault_settings = load_settings(
        environment="test",
        data_dir=tmp_path,
        key_backend="vault",
        vault_addr=openbao.addr,
        vault_token=openbao.token,
    )
    chosen = key_backend_from_settings(vault_settings)
    assert isinstance(chosen, VaultKeyBackend)
    assert "vault transit" in chosen.check()


def _jws(backend: KeyBackend, name: str, claims: dict[str, object]) -> str:
    import base64
    import json

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    kid = backend.jws_key_id(name)
    header = b64(json.dumps({"alg": "ES256", "typ": "JWT", "kid": kid}).encode())
    payload = b64(json.dumps(claims).encode())
    signature = backend.sign_jws(name, kid, f"{header}.{payload}".encode())
    assert len(signature) == 64
    return f"{header}.{payload}.{b64(signature)}"


def test_ecdsa_jws_signatures_verify_with_python_jose_across_rotation_until_retired(backend):
    from jose import jws
    from jose.exceptions import JWSError

    name = _name("token")
    first = _jws(backend, name, {"n": 1})
    assert jws.get_unverified_header(first)["kid"] == f"{name}:v1"
    public = backend.jws_public_keys(name)
    assert set(public) == {f"{name}:v1"}
    assert jws.verify(first, public[f"{name}:v1"], algorithms=["ES256"]) == b'{"n": 1}'

    assert backend.rotate(name) == 2
    second = _jws(backend, name, {"n": 2})
    assert jws.get_unverified_header(second)["kid"] == f"{name}:v2"
    public = backend.jws_public_keys(name)
    assert jws.verify(first, public[f"{name}:v1"], algorithms=["ES256"])
    assert jws.verify(second, public[f"{name}:v2"], algorithms=["ES256"])
    with pytest.raises(JWSError):
        jws.verify(second, public[f"{name}:v1"], algorithms=["ES256"])

    backend.retire(name, 2)
    assert set(backend.jws_public_keys(name)) == {f"{name}:v2"}


def test_ecdsa_key_is_refused_for_other_purposes_and_foreign_key_ids(backend):
    name = _name("token")
    backend.jws_key_id(name)
    with pytest.raises(KeyManagementError):
        backend.sign(name, b"x")
    with pytest.raises(KeyManagementError):
        backend.sign_jws(name, "another-key:v1", b"x.y")


def test_many_keyed_hashes_at_once_equal_one_at_a_time(backend):
    name = _name("domain")
    items = [f"student-{i}".encode() for i in range(1203)]
    assert backend.hmac_many(name, items) == [
        backend.hmac(name, item) for item in items[:5]
    ] + backend.hmac_many(name, items[5:])
    assert backend.hmac_many(name, items)[1202] == backend.hmac(name, items[1202])
    assert backend.hmac_many(name, []) == []
