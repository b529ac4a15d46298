"""Fixtures of the consent tests."""

from __future__ import annotations

import pytest

from consent.identity import IdentityProtector
from enclave.components import Components


@pytest.fixture
def protector(components: Components) -> IdentityProtector:
    """The identity protector on the test's key folder."""
    return IdentityProtector(components.keys)
