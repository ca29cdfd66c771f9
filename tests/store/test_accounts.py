"""store.accounts: local accounts with scrypt hashes and roles, OIDC accounts by email; on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from store.accounts import (
    AccountError,
    add_account,
    authenticate,
    find_account,
    list_accounts,
    password_matches,
    remove_account,
    role_of,
    set_password,
    set_role,
)
from store.models import Account
from store.vocab import Role


def test_roles_include_the_ones_before_them():
    assert Role.APPROVER.allows(Role.OPERATOR) and Role.OPERATOR.allows(Role.VIEWER)
    assert not Role.VIEWER.allows(Role.OPERATOR) and not Role.OPERATOR.allows(Role.APPROVER)


def test_a_local_account_signs_in_with_its_password_only(engine):
    record = add_account(engine, "ana@ops.example", role="operator", password="a long passphrase")
    assert record.role is Role.OPERATOR and record.local
    assert authenticate(engine, "ana@ops.example", "a long passphrase") == record
    assert authenticate(engine, "ana@ops.example", "a long passphrasE") is None
    assert authenticate(engine, "nobody", "a long passphrase") is None
    with engine.connect() as conn:  # only a salted hash is stored
        stored = conn.execute(Account.__table__.select()).first().password_hash
    assert "a long passphrase" not in stored and stored.startswith("scrypt$")
    assert password_matches("a long passphrase", stored)
    set_password(engine, "ana@ops.example", "another passphrase")
    assert authenticate(engine, "ana@ops.example", "a long passphrase") is None
    assert authenticate(engine, "ana@ops.example", "another passphrase") is not None


def test_two_hashes_of_one_password_differ():
    from store.accounts import hash_password

    assert hash_password("same password!") != hash_password("same password!")


def test_bad_accounts_are_refused_with_the_reason(engine):
    with pytest.raises(AccountError, match="at least 10"):
        add_account(engine, "bo", role="viewer", password="short")
    with pytest.raises(AccountError, match="unknown role 'admin'"):
        add_account(engine, "bo", role="admin", password="long enough pw")
    with pytest.raises(AccountError, match="username"):
        add_account(engine, "bo bo", role="viewer", password="long enough pw")
    add_account(engine, "bo", role="viewer", password="long enough pw")
    with pytest.raises(AccountError, match="exists already"):
        add_account(engine, "bo", role="viewer", password="long enough pw")
    with pytest.raises(AccountError, match="no account 'cy'"):
        set_role(engine, "cy", "viewer")


def test_an_organisation_account_has_a_role_but_no_password(engine):
    add_account(engine, "dee@corp.example", role="approver", password=None)
    assert role_of(engine, "dee@corp.example") is Role.APPROVER
    assert role_of(engine, "stranger@corp.example") is Role.VIEWER  # unknown emails only look
    assert authenticate(engine, "dee@corp.example", "") is None  # no password sign-in for it
    set_role(engine, "dee@corp.example", "operator")
    assert find_account(engine, "dee@corp.example").role is Role.OPERATOR
    assert [a.username for a in list_accounts(engine)] == ["dee@corp.example"]
    remove_account(engine, "dee@corp.example")
    assert list_accounts(engine) == []
