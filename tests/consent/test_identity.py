"""Identities at rest: nothing readable in the database, look-ups by blind index only."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from consent.identity import IdentityDecryptFailed, IdentityField, IdentityProtector
from tests.support.consent import make_guardian, make_student


def test_guardian_name_and_email_are_not_stored_in_clear(db_session, protector):
    student = make_student(db_session, protector)
    make_guardian(db_session, protector, [student], name="Elena Dimitrova", email="Elena@Example.org")
    dump = db_session.execute(
        text("SELECT name_ciphertext, email_ciphertext, email_index FROM consent_guardian")
    ).one()
    raw = b"".join(bytes(v) if isinstance(v, bytes | memoryview) else v.encode() for v in dump)
    assert b"Elena" not in raw
    assert b"example.org" not in raw.lower()


def test_ciphertext_decrypts_only_as_its_own_field(db_session, protector):
    blob = protector.encrypt(db_session, IdentityField.guardian_email, "a@b.example")
    assert protector.decrypt(db_session, IdentityField.guardian_email, blob) == "a@b.example"
    with pytest.raises(IdentityDecryptFailed):
        protector.decrypt(db_session, IdentityField.guardian_name, blob)


def test_a_second_process_reads_the_same_keys(db_session, protector, components):
    index = protector.blind_index(db_session, IdentityField.guardian_email, "x@y.example")
    other = IdentityProtector(components.keys)
    assert other.blind_index(db_session, IdentityField.guardian_email, "x@y.example") == index
    assert other.blind_index(db_session, IdentityField.teacher_email, "x@y.example") != index
