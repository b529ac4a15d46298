"""The Merkle tree matches the RFC 6962 reference vectors; its proofs hold, and break when altered."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
import rfc8785

from access.audit import canonical
from access.audit.merkle import (
    EMPTY_ROOT,
    RootBuilder,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    tree_hash,
    verify_consistency,
    verify_inclusion,
)

# Certificate Transparency's reference inputs and the published roots of trees of 1..8 of them.
INPUTS = [bytes.fromhex(h) for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                     "606162636465666768696a6b6c6d6e6f"]]  # fmt: skip
LEAVES = [leaf_hash(data) for data in INPUTS]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]  # fmt: skip
CONSISTENCY = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]  # fmt: skip


def _flip(value: bytes) -> bytes:
    return bytes([value[0] ^ 1]) + value[1:]


def test_empty_tree_hash_is_sha256_of_nothing():
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert tree_hash([]) == EMPTY_ROOT
    assert RootBuilder().root() == EMPTY_ROOT


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_match_the_published_rfc6962_vectors(size):
    assert tree_hash(LEAVES[:size]).hex() == ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size", "expected"), INCLUSION)
def test_inclusion_proofs_match_the_published_vectors(index, size, expected):
    proof = inclusion_proof(index, LEAVES[:size])
    assert [p.hex() for p in proof] == expected
    assert verify_inclusion(index, size, LEAVES[index], proof, bytes.fromhex(ROOTS[size - 1]))


@pytest.mark.parametrize(("first", "second", "expected"), CONSISTENCY)
def test_consistency_proofs_match_the_published_vectors(first, second, expected):
    proof = consistency_proof(first, LEAVES[:second])
    assert [p.hex() for p in proof] == expected
    assert verify_consistency(
        first, second, proof, bytes.fromhex(ROOTS[first - 1]), bytes.fromhex(ROOTS[second - 1])
    )


def _leaves(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [leaf_hash(rng.randbytes(rng.randint(0, 40))) for _ in range(n)]


def test_every_inclusion_proof_verifies_for_tree_sizes_1_to_200_and_breaks_when_altered():
    leaves = _leaves(200, seed=6962)
    for size in range(1, 201):
        tree = leaves[:size]
        root = tree_hash(tree)
        indexes = range(size) if size <= 64 else random.Random(size).sample(range(size), 16)
        for index in indexes:
            proof = inclusion_proof(index, tree)
            assert verify_inclusion(index, size, tree[index], proof, root)
            assert not verify_inclusion(index, size, _flip(tree[index]), proof, root)
            assert not verify_inclusion(index, size, tree[index], proof, _flip(root))
            for k in range(len(proof)):
                altered = [*proof[:k], _flip(proof[k]), *proof[k + 1 :]]
                assert not verify_inclusion(index, size, tree[index], altered, root)
            if size > 1:
                assert not verify_inclusion((index + 1) % size, size, tree[index], proof, root)


def test_every_consistency_proof_verifies_for_tree_sizes_1_to_200_and_breaks_when_altered():
    leaves = _leaves(200, seed=9162)
    roots = [b""] + [tree_hash(leaves[:n]) for n in range(1, 201)]
    rng = random.Random(89)
    for second in range(1, 201):
        firsts = range(1, second + 1) if second <= 40 else rng.sample(range(1, second + 1), 8)
        for first in firsts:
            proof = consistency_proof(first, leaves[:second])
            assert verify_consistency(first, second, proof, roots[first], roots[second])
            if first == second:
                continue
            assert not verify_consistency(first, second, proof, _flip(roots[first]), roots[second])
            assert not verify_consistency(first, second, proof, roots[first], _flip(roots[second]))
            for k in range(len(proof)):
                altered = [*proof[:k], _flip(proof[k]), *proof[k + 1 :]]
                assert not verify_consistency(first, second, altered, roots[first], roots[second])


@pytest.mark.parametrize("size", [1_000, 1_025, 4_097])
def test_proofs_hold_in_random_larger_trees(size):
    leaves = _leaves(size, seed=size)
    root = tree_hash(leaves)
    rng = random.Random(size)
    for index in rng.sample(range(size), 10):
        assert verify_inclusion(index, size, leaves[index], inclusion_proof(index, leaves), root)
    for first in rng.sample(range(1, size), 10):
        proof = consistency_proof(first, leaves)
        assert verify_consistency(first, size, proof, tree_hash(leaves[:first]), root)


def test_root_builder_resumes_from_a_saved_frontier():
    leaves = _leaves(300, seed=7)
    builder = RootBuilder()
    for leaf in leaves[:137]:
        builder.append(leaf)
    resumed = RootBuilder.resume(builder.size, builder.frontier)
    for leaf in leaves[137:]:
        resumed.append(leaf)
    assert resumed.root() == tree_hash(leaves)
    with pytest.raises(ValueError, match="frontier"):
        RootBuilder.resume(137, builder.frontier[:-1])


def test_canonical_encoding_equals_rfc8785():
    rng = random.Random(8785)
    alphabet = 'aZ09 _-"\\/\n\t\u0001\u007féñ€\u2028😀ъщ'
    for _ in range(500):
        document = canonical.entry_document(
            seq=rng.randint(1, 10**12),
            occurred_at=datetime.now(UTC),
            actor_id="".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20))),
            actor_role="researcher",
            action="dp.query_released",
            target_type=rng.choice([None, "dataset"]),
            target_id=rng.choice([None, "ds-1"]),
            outcome="ok",
            request_id=None,
            project_id="p-1",
            details={
                "n": rng.randint(-(2**53), 2**53),
                "ok": rng.choice([True, False]),
                "nested": {"b": [1, "x"]},
            },
            prev_hash="0" * 64,
        )
        assert canonical.canonical_bytes(document) == rfc8785.dumps(document)
