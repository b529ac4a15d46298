"""RFC 6962 / RFC 9162 Merkle tree: tree hash, inclusion and consistency proofs and their checks.

Leaf hash = SHA-256(0x00 ‖ leaf), node hash = SHA-256(0x01 ‖ left ‖ right); the empty tree's hash
is SHA-256 of nothing. :class:`RootBuilder` computes the root of a growing tree in O(log n) memory,
which is what lets verification stream over millions of entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import sha256

EMPTY_ROOT = sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """Hash of one leaf."""
    return sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash of an interior node."""
    return sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def tree_hash(leaves: Sequence[bytes]) -> bytes:
    """MTH over already-hashed leaves."""
    if not leaves:
        return EMPTY_ROOT
    builder = RootBuilder()
    for leaf in leaves:
        builder.append(leaf)
    return builder.root()


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(index, D[n]): the audit path of one leaf in the tree of ``leaves`` (leaf hashes)."""
    if not 0 <= index < len(leaves):
        raise ValueError(f"leaf index {index} outside a tree of size {len(leaves)}")
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*inclusion_proof(index, leaves[:k]), tree_hash(leaves[k:])]
    return [*inclusion_proof(index - k, leaves[k:]), tree_hash(leaves[:k])]


def consistency_proof(first: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(first, D[n]): shows the tree of the first ``first`` leaves is a prefix of this one."""
    if not 0 < first <= len(leaves):
        raise ValueError(f"consistency proof from size {first} to {len(leaves)} is undefined")
    return _subproof(first, leaves, complete=True)


def _subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [tree_hash(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete), tree_hash(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), tree_hash(leaves[:k])]


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: does ``proof`` place ``leaf`` at ``index`` in the tree with ``root``?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    first: int, second: int, proof: Sequence[bytes], first_root: bytes, second_root: bytes
) -> bool:
    """RFC 9162 §2.1.4.2: does the tree (second, second_root) extend (first, first_root)?"""
    if first == second:
        return not proof and first_root == second_root
    if not 0 < first < second or not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


class RootBuilder:
    """Root of a tree that grows one leaf at a time, keeping only the perfect subtrees' hashes."""

    __slots__ = ("_stack", "size")

    def __init__(self) -> None:
        self._stack: list[bytes] = []
        self.size = 0

    def append(self, leaf: bytes) -> None:
        """Add the next leaf hash."""
        self._stack.append(leaf)
        self.size += 1
        # Each trailing 1-bit of the new size closes a perfect subtree: merge it with its left twin.
        n = self.size
        while not n & 1:
            right = self._stack.pop()
            left = self._stack.pop()
            self._stack.append(node_hash(left, right))
            n >>= 1

    @property
    def frontier(self) -> list[bytes]:
        """The perfect subtrees' hashes, left to right: enough to resume appending later."""
        return list(self._stack)

    @classmethod
    def resume(cls, size: int, frontier: Sequence[bytes]) -> RootBuilder:
        """A builder continuing a tree of ``size`` leaves from its saved frontier."""
        if len(frontier) != size.bit_count():
            raise ValueError(
                f"a frontier of a {size}-leaf tree has {size.bit_count()} hashes, not {len(frontier)}"
            )
        builder = cls()
        builder._stack = list(frontier)
        builder.size = size
        return builder

    def root(self) -> bytes:
        """The tree hash of every leaf appended so far."""
        if not self._stack:
            return EMPTY_ROOT
        result = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            result = node_hash(left, result)
        return result
