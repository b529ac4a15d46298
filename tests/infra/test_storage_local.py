"""The local-folder object store: the full interface, and atomic publish even when a writer dies."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from infra.storage import ObjectNotFound, StorageError
from infra.storage.local import LocalStorage


@pytest.fixture
def store(tmp_path):
    return LocalStorage(tmp_path / "objects")


def test_put_get_stat_list_delete_round_trip(store):
    store.put("datasets/a/v1/part-0", b"alpha")
    store.put("datasets/a/v1/part-1", b"beta")
    store.put("datasets/b/v1/part-0", b"gamma")
    assert store.get("datasets/a/v1/part-0") == b"alpha"
    assert store.stat("datasets/a/v1/part-1").size == 4
    assert [o.key for o in store.list("datasets/a/")] == ["datasets/a/v1/part-0", "datasets/a/v1/part-1"]
    assert store.exists("datasets/b/v1/part-0")
    store.delete("datasets/b/v1/part-0")
    assert not store.exists("datasets/b/v1/part-0")
    with pytest.raises(ObjectNotFound):
        store.get("datasets/b/v1/part-0")
    store.delete("datasets/b/v1/part-0")


def test_stream_put_and_chunked_read(store):
    payload = os.urandom(3 * 1024 * 1024 + 17)
    info = store.put_stream("big/object", io.BytesIO(payload))
    assert info.size == len(payload)
    assert b"".join(store.open("big/object")) == payload


def test_stream_shorter_than_declared_length_publishes_nothing(store):
    with pytest.raises(StorageError):
        store.put_stream("short/object", io.BytesIO(b"abc"), length=10)
    assert not store.exists("short/object")
    assert list(store.list("short/")) == []


@pytest.mark.parametrize("key", ["../escape", "/absolute", "a//b", "a/./b", "dir/", "x/.tmp-hidden"])
def test_keys_that_could_escape_the_folder_are_refused(store, key):
    with pytest.raises(StorageError):
        store.put(key, b"x")


def test_objects_and_folders_are_private(store):
    store.put("private/object", b"secret")
    assert (store.root / "private" / "object").stat().st_mode & 0o077 == 0
    assert store.root.stat().st_mode & 0o077 == 0


def test_reader_never_sees_a_partial_object_while_it_is_overwritten(store):
    size = 4 * 1024 * 1024
    versions = [bytes([i]) * size for i in range(1, 5)]
    store.put("shared/object", versions[0])
    stop = threading.Event()
    seen: list[int] = []

    def writer() -> None:
        i = 0
        while not stop.is_set():
            store.put("shared/object", versions[i % len(versions)])
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            data = store.get("shared/object")
            assert len(data) == size
            assert data.count(data[0]) == size
            seen.append(data[0])
    finally:
        stop.set()
        thread.join()
    assert len(set(seen)) > 1, "the reader should have seen several complete versions"


WRITER = """
import sys, time
from pathlib import Path
from infra.storage.local import LocalStorage

class Slow:
    def __init__(self):
        self.sent = 0
    def read(self, n):
        if self.sent == 0:
            print("writing", flush=True)
        time.sleep(0.01)
        self.sent += n
        return b"N" * n

LocalStorage(Path(sys.argv[1])).put_stream("killed/object", Slow())
"""


def test_writer_killed_mid_write_leaves_the_old_object_intact(store):
    store.put("killed/object", b"previous complete version")
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(store.root)], stdout=subprocess.PIPE, cwd=os.getcwd()
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == b"writing"
    time.sleep(0.5)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    assert store.get("killed/object") == b"previous complete version"
    assert [o.key for o in store.list("killed/")] == ["killed/object"]
    leftovers = list((store.root / "killed").glob(".tmp-*"))
    assert leftovers, "the killed writer's temporary file should exist until cleaned"
    assert store.remove_stale_temporaries(older_than_seconds=3600) == 0
    assert store.remove_stale_temporaries(older_than_seconds=0) == len(leftovers)
    assert not list((store.root / "killed").glob(".tmp-*"))


def test_writer_killed_on_a_new_key_publishes_nothing(store):
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(store.root)], stdout=subprocess.PIPE)
    assert process.stdout is not None
    process.stdout.readline()
    time.sleep(0.3)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not store.exists("killed/object")
    with pytest.raises(ObjectNotFound):
        store.get("killed/object")
