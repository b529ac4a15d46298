"""Request bodies over their route's limit are refused with 413 before they are read, over real HTTP.

The app (the same one the ``client`` fixture builds, on the test's database) is served by uvicorn on
a free port, so that a body can be declared and not sent, or sent chunk by chunk, as a client would.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

from access.audit.actions import Role
from enclave.app import MAX_BODY_BYTES, MAX_BULK_BODY_BYTES, MAX_STREAMED_UPLOAD_BYTES, MULTIPART_ENVELOPE
from enclave.datasets.ingestion import MAX_UPLOAD
from tests.support.auth import auth_headers
from tests.support.processes import free_port

DATASET = "questionnaire-wave1"
PROBLEM = "application/problem+json"
UPLOAD_LIMIT = MAX_UPLOAD + MULTIPART_ENVELOPE


@dataclass
class Served:
    """The app served over HTTP by uvicorn in a thread."""

    host: str
    port: int
    uvicorn: uvicorn.Server

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def wait_idle(self) -> None:
        """Wait until the app has finished with every request (a client has its answer before the
        request's session is closed, and the tests' sessions share one connection)."""
        deadline = time.monotonic() + 20
        while self.uvicorn.server_state.tasks:
            assert time.monotonic() < deadline, "a request never finished"
            time.sleep(0.01)


@pytest.fixture
def server(client) -> Iterator[Served]:
    """The app of ``client`` (the test's database and store) served by uvicorn on a free port."""
    port = free_port()
    config = uvicorn.Config(client.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    served = uvicorn.Server(config)
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not served.started:
        assert thread.is_alive(), "uvicorn stopped"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield Served("127.0.0.1", port, served)
    served.should_exit = True
    thread.join(timeout=20)


def exchange(server: Served, head: str, body_chunks: Iterable[bytes] = ()) -> tuple[bytes, int]:
    """Send a request head, then body chunks until the server answers; returns (answer, body bytes sent).

    The answer is read until the server closes the connection (or 10 s pass)."""
    sent = 0
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(head.encode("ascii"))
        for chunk in body_chunks:
            if select.select([sock], [], [], 0)[0]:
                break  # answered already: send no more
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        answer = b""
        try:
            while data := sock.recv(65536):
                answer += data
        except (ConnectionResetError, TimeoutError):
            pass
    return answer, sent


def problem_of(answer: bytes) -> tuple[int, dict[str, str], dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, json.loads(body)


def test_an_oversized_json_body_is_refused_with_413_and_a_reason_before_any_sign_in(server):
    body = json.dumps({"title": "x" * (MAX_BODY_BYTES + 1)})
    answer = httpx.post(
        f"{server.url}/api/projects", content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 413
    assert answer.headers["content-type"] == PROBLEM
    problem = answer.json()
    assert problem["reason"] == "body_too_large"
    assert problem["limit_bytes"] == MAX_BODY_BYTES
    assert problem["detail"] == "the request body is larger than this route accepts (2 MiB)"
    assert problem["instance"] == "/api/projects"
    assert answer.headers["x-request-id"] == problem["request_id"]
    assert answer.headers["x-content-type-options"] == "nosniff"
    small = httpx.post(f"{server.url}/api/projects", json={"title": "x"})
    assert small.status_code == 401, "an ordinary body still reaches the route (which asks for a sign-in)"


def test_a_status_batch_of_50000_pseudonyms_is_within_the_bulk_limit(server):
    body = json.dumps({"domain": "letscare-main", "pseudonyms": ["a" * 64] * 50_000}, indent=2)
    assert MAX_BODY_BYTES < len(body) < MAX_BULK_BODY_BYTES
    answer = httpx.post(
        f"{server.url}/api/consent/status", content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 401, answer.text


@pytest.mark.parametrize(
    ("path", "limit"),
    [
        (f"/api/datasets/{DATASET}/versions", UPLOAD_LIMIT),
        ("/api/consent/rosters/students", UPLOAD_LIMIT),
        (f"/api/datasets/{DATASET}/uploads", MAX_STREAMED_UPLOAD_BYTES),
        ("/api/consent/forms", MAX_BODY_BYTES),
    ],
)
def test_an_oversized_upload_is_refused_before_a_byte_of_it_is_sent(server, path, limit):
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {server.host}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {limit + 1}\r\n\r\n"
    )
    answer, sent = exchange(server, head)
    assert sent == 0
    status, headers, problem = problem_of(answer)
    assert status == 413
    assert headers["connection"] == "close", "the rest of the body is never read"
    assert problem["reason"] == "body_too_large"
    assert problem["limit_bytes"] == limit


def test_a_normal_upload_still_works_both_ways(server, client, world, staff_factory):
    steward = auth_headers(client, staff_factory(roles=[Role.data_steward], country="ES"))
    data = world["upload"].write_csv().encode()
    multipart = httpx.post(
        f"{server.url}/api/datasets/{DATASET}/versions",
        files={"file": ("wave1.csv", data, "text/csv")},
        headers=steward,
        timeout=60,
    )
    assert multipart.status_code == 201, multipart.text
    assert multipart.json()["rows_stored"] == len(world["granted"])
    server.wait_idle()
    raw = httpx.post(
        f"{server.url}/api/datasets/{DATASET}/uploads",
        content=data,
        headers={**steward, "Content-Type": "text/csv"},
        timeout=60,
    )
    assert raw.status_code == 201, raw.text
    assert raw.json()["version"] == 2


def chunked(total: int, prefix: bytes = b"", size: int = 64 * 1024) -> Iterator[bytes]:
    """``prefix`` then ``total`` bytes of ``a`` as HTTP/1.1 chunks (never the last chunk: the server
    answers first)."""
    if prefix:
        yield f"{len(prefix):x}\r\n".encode() + prefix + b"\r\n"
    for _ in range(total // size):
        yield f"{size:x}\r\n".encode() + b"a" * size + b"\r\n"


FILE_PART = (
    b'--b\r\nContent-Disposition: form-data; name="file"; filename="form.md"\r\n'
    b"Content-Type: text/markdown\r\n\r\n"
)


@pytest.mark.parametrize(
    ("path", "content_type", "prefix"),
    [
        ("/api/projects", "application/json", b""),
        ("/api/consent/forms", "multipart/form-data; boundary=b", FILE_PART),
    ],
    ids=["json", "multipart"],
)
def test_a_chunked_body_without_length_is_cut_off_with_413_once_over_the_limit(
    server, path, content_type, prefix
):
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {server.host}\r\n"
        f"Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    planned = 256 * 1024 * 1024
    answer, sent = exchange(server, head, chunked(planned, prefix))
    status, _headers, problem = problem_of(answer)
    assert status == 413, answer[:300]
    assert problem["reason"] == "body_too_large"
    assert problem["limit_bytes"] == MAX_BODY_BYTES
    assert sent > MAX_BODY_BYTES, "the body was counted as it arrived"
    assert sent < MAX_BODY_BYTES + 32 * 1024 * 1024, "and refused soon after the limit, not read to its end"
