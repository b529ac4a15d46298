"""The envelope format of every stored research object: segmented AES-256-GCM under a per-object key.

Each stored object has its own fresh 256-bit data key (``os.urandom(32)``), wrapped by the versioned
key-encryption key ``dataset-kek`` of the key backend (see :mod:`enclave.objects.store`); the wrapped
key lives in the database, never beside the object. The object is encrypted with AES-256-GCM from
``cryptography`` in fixed-size segments, so objects of any size stream through bounded memory.

Layout (all integers big-endian)::

    header   = magic "LCEO" (4 bytes) | format version 0x01 (1 byte) | segment size S (4 bytes)
               | nonce prefix (7 random bytes)                                      = 16 bytes
    segment  = AES-256-GCM(key, nonce_i, plaintext_i, ad_i) = ciphertext_i || tag (16 bytes)
    object   = header || segment_0 || segment_1 || ... || segment_n

* ``S`` (default 1 MiB) is the stored size of a full segment, tag included, and the header counts
  towards the first one: segment 0 takes ``S - 16`` stored bytes (``S - 32`` of plaintext), every
  later segment ``S`` stored bytes (``S - 16`` of plaintext), so segment boundaries fall on multiples
  of ``S`` in the object and 1 MiB reads of the store hand over whole segments without copying.
* Every segment but the last is full; the last holds from 0 bytes up to a full segment of
  plaintext (an empty object is one empty last segment). A reader therefore knows a segment is the
  last one only because nothing follows it, and the flag in the nonce and associated data must
  agree.
* ``nonce_i = nonce prefix (7) | i as 4 bytes | is-last flag (1 byte: 0x00 or 0x01)``; the prefix is
  random per object and the key is fresh per object, so no (key, nonce) pair is ever reused.
* ``ad_i = header (16) | binding | i as 8 bytes | is-last flag (1 byte)``, where ``binding`` is
  ``"letscare-object/1" | 0x00 | len(dataset id) (2) | dataset id | version (8)
  | len(object name) (2) | object name``, the ids and name in UTF-8. The same ``binding`` bytes
  are the context the data key is wrapped under, so a wrapped key copied to another object's row
  does not unwrap either.
* ``S`` is between 64 bytes and 64 MiB; a reader takes it from the header (it is authenticated as
  part of every segment's associated data).

So a flipped byte anywhere, an object copied under another name, dataset or version, a segment moved,
dropped, duplicated or appended, a truncated object (the new last segment was sealed as not last)
and an altered header all fail authentication, and :class:`ObjectIntegrityError` is raised before
the affected segment's plaintext is released. Segments before the damage may already have been
yielded to a streaming reader: consumers that must not act on partial data read to the end (or use
``read_object``) before publishing anything.
"""

from __future__ import annotations

import os
import struct
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from infra.errors import EnclaveError

MAGIC = b"LCEO"
FORMAT_VERSION = 1
HEADER_BYTES = 16
PREFIX_BYTES = 7
TAG_BYTES = 16
DEFAULT_SEGMENT_SIZE = 1024 * 1024
MIN_SEGMENT_SIZE = 64
MAX_SEGMENT_SIZE = 64 * 1024 * 1024
MAX_SEGMENTS = 2**32
KEY_BYTES = 32

_HEADER = struct.Struct(">4sBI7s")
_NONCE_TAIL = struct.Struct(">IB")
_AD_TAIL = struct.Struct(">QB")
_BINDING_TAG = b"letscare-object/1\x00"


class ObjectIntegrityError(EnclaveError):
    """A stored object does not authenticate: altered, truncated, swapped or replayed. No data is given."""

    status_code = 500
    type_slug = "object-integrity"
    title = "Stored object failed its integrity check"


@dataclass(frozen=True)
class Binding:
    """What one object is bound to: its dataset, the dataset version and the object's name."""

    dataset_id: str
    version: int
    name: str

    def encode(self) -> bytes:
        """The canonical bytes of the binding (associated data, and the key-wrapping context)."""
        dataset = self.dataset_id.encode()
        name = self.name.encode()
        if len(dataset) > 0xFFFF or len(name) > 0xFFFF or not 0 <= self.version < 2**63:
            raise ValueError("binding field out of range")
        return b"".join(
            (
                _BINDING_TAG,
                struct.pack(">H", len(dataset)),
                dataset,
                struct.pack(">Q", self.version),
                struct.pack(">H", len(name)),
                name,
            )
        )


def new_data_key() -> bytes:
    """A fresh 256-bit data key for one object."""
    return os.urandom(KEY_BYTES)


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    if index >= MAX_SEGMENTS:
        raise ObjectIntegrityError("object has more segments than the format allows")
    return prefix + _NONCE_TAIL.pack(index, last)


class _Pieces:
    """Incoming chunks handed out in exact sizes without allocating per segment.

    A piece that lies within one chunk is a view of it; one that spans chunks is copied into a
    scratch buffer reused for every segment. Allocating a fresh megabyte per segment makes the
    allocator give memory back to the system and fault it in again, which costs more than the
    cipher. A returned view is valid until the next ``take``.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending: deque[memoryview] = deque()
        self._scratch = bytearray()
        self.available = 0
        self.ended = False

    def fill(self, wanted: int) -> None:
        """Read until more than ``wanted`` bytes are held, or the stream ended."""
        while self.available <= wanted and not self.ended:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self.ended = True
                return
            if chunk:
                self._pending.append(memoryview(chunk))
                self.available += len(chunk)

    def take(self, size: int) -> memoryview:
        """A view of the next ``size`` bytes (the caller checked they are held)."""
        self.available -= size
        first = self._pending[0]
        if len(first) >= size:
            if len(first) == size:
                self._pending.popleft()
            else:
                self._pending[0] = first[size:]
            return first[:size]
        if len(self._scratch) < size:
            self._scratch = bytearray(size)
        scratch = memoryview(self._scratch)
        filled = 0
        while filled < size:
            piece = self._pending.popleft()
            if len(piece) > size - filled:
                self._pending.appendleft(piece[size - filled :])
                piece = piece[: size - filled]
            scratch[filled : filled + len(piece)] = piece
            filled += len(piece)
        return scratch[:size]


def plaintext_per_segment(segment_size: int, index: int) -> int:
    """Plaintext bytes in a full segment ``index`` (the header takes room in the first one)."""
    return segment_size - TAG_BYTES - (HEADER_BYTES if index == 0 else 0)


def encrypt_stream(
    key: bytes, binding: Binding, chunks: Iterable[bytes], *, segment_size: int = DEFAULT_SEGMENT_SIZE
) -> Iterator[bytes]:
    """The stored form of ``chunks``: the header, then one sealed segment at a time.

    Holds at most one segment plus one incoming chunk in memory.
    """
    if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
        raise ValueError(f"segment size must be between {MIN_SEGMENT_SIZE} and {MAX_SEGMENT_SIZE} bytes")
    prefix = os.urandom(PREFIX_BYTES)
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, segment_size, prefix)
    ad_head = header + binding.encode()
    aead = AESGCM(key)
    yield header
    pieces = _Pieces(chunks)
    index = 0
    while True:
        full = plaintext_per_segment(segment_size, index)
        # More than a full segment held: this one is certainly not the last.
        pieces.fill(full)
        if pieces.available > full:
            yield aead.encrypt(
                _nonce(prefix, index, False), pieces.take(full), ad_head + _AD_TAIL.pack(index, False)
            )
            index += 1
            continue
        plain = pieces.take(pieces.available) if pieces.available else memoryview(b"")
        yield aead.encrypt(_nonce(prefix, index, True), plain, ad_head + _AD_TAIL.pack(index, True))
        return


def parse_header(header: bytes) -> tuple[int, bytes]:
    """Segment size and nonce prefix of a stored object's header; ObjectIntegrityError if malformed."""
    if len(header) < HEADER_BYTES:
        raise ObjectIntegrityError("stored object is shorter than its header")
    magic, version, segment_size, prefix = _HEADER.unpack(bytes(header[:HEADER_BYTES]))
    if magic != MAGIC:
        raise ObjectIntegrityError("stored object is not an encrypted enclave object")
    if version != FORMAT_VERSION:
        raise ObjectIntegrityError(f"stored object has unknown format version {version}")
    if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
        raise ObjectIntegrityError("stored object has an invalid segment size")
    return segment_size, prefix


def decrypt_stream(key: bytes, binding: Binding, stored: Iterable[bytes]) -> Iterator[bytes]:
    """The plaintext of a stored object, one segment at a time, authenticated segment by segment.

    Raises :class:`ObjectIntegrityError` at the first segment that does not authenticate, and at the
    end if the object was truncated. Holds at most one segment plus one incoming chunk in memory.
    """
    aead = AESGCM(key)
    pieces = _Pieces(stored)
    pieces.fill(HEADER_BYTES - 1)
    if pieces.available < HEADER_BYTES:
        raise ObjectIntegrityError("stored object is shorter than its header")
    header = bytes(pieces.take(HEADER_BYTES))
    segment_size, prefix = parse_header(header)
    ad_head = header + binding.encode()
    index = 0
    while True:
        full = segment_size - (HEADER_BYTES if index == 0 else 0)
        pieces.fill(full)
        if pieces.available > full:
            yield _open(aead, pieces.take(full), prefix, ad_head, index, last=False)
            index += 1
            continue
        if pieces.available < TAG_BYTES:
            raise ObjectIntegrityError("stored object is truncated")
        yield _open(aead, pieces.take(pieces.available), prefix, ad_head, index, last=True)
        return


def _open(
    aead: AESGCM, sealed: memoryview, prefix: bytes, ad_head: bytes, index: int, *, last: bool
) -> bytes:
    try:
        return aead.decrypt(_nonce(prefix, index, last), sealed, ad_head + _AD_TAIL.pack(index, last))
    except InvalidTag:
        raise ObjectIntegrityError(
            f"stored object fails authentication at segment {index}: altered, truncated, "
            "moved from another object, or opened with the wrong dataset, version or name",
            extra={"reason": "integrity", "segment": index},
        ) from None


def stored_size(plaintext_size: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """How many bytes an object of ``plaintext_size`` bytes takes once encrypted."""
    first = plaintext_per_segment(segment_size, 0)
    later = plaintext_per_segment(segment_size, 1)
    segments = 1 + max(0, -(-(plaintext_size - first) // later))
    return HEADER_BYTES + plaintext_size + segments * TAG_BYTES


def segment_bounds(stored_length: int, segment_size: int) -> list[tuple[int, int]]:
    """(start, end) of every sealed segment in a stored object of ``stored_length`` bytes."""
    bounds = []
    start = HEADER_BYTES
    end = segment_size
    while end < stored_length:
        bounds.append((start, end))
        start, end = end, end + segment_size
    bounds.append((start, stored_length))
    return bounds
