"""Who uses the console: sign-in, the signed-in account and its role.

Two ways in, both required before any page shows:
- an organisation's OIDC provider through `st.login`, when `.streamlit/secrets.toml` (or `sluice ui --secrets F`)
  has an `[auth]` section (`redirect_uri`, `cookie_secret`, `client_id`, `client_secret`,
  `server_metadata_url`; several providers as `[auth.NAME]`). The provider's email names the account; its role
  comes from the account table (`sluice user add EMAIL --oidc --role operator`), and an email the table does not
  know signs in as a viewer;
- a local account (`sluice user add NAME --role operator`): name and password, checked against the salted scrypt
  hash in the Sluice database. After five wrong passwords in a session the form pauses for a minute.

The signed-in account is the author of every policy change the console makes; nothing lets a user type a name.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import streamlit as st
from sqlalchemy import Engine

from store.accounts import authenticate, list_accounts, role_of
from store.vocab import Role

SESSION_KEY = "sluice_account"
FAILURES_KEY = "sluice_sign_in_failures"
MAX_FAILURES = 5
PAUSE_SECONDS = 60.0
NO_ACCOUNTS = ("No console accounts yet. Create one with `sluice user add NAME --role operator` (it asks for a "
               "password), then sign in here.")


@dataclass(frozen=True)
class SignedIn:
    """The account using the console, and how it signed in."""

    username: str
    role: Role
    method: str  # "password" or "oidc"

    def may(self, needed: Role) -> bool:
        return self.role.allows(needed)


def oidc_providers() -> list[str]:
    """The OIDC providers named in the secrets' `[auth]` section ("" for a single unnamed one); none without it."""
    try:
        section = st.secrets.get("auth")
    except FileNotFoundError:
        return []
    if not section:
        return []
    named = [name for name, value in section.items() if hasattr(value, "items")]
    return named or [""]


def current(engine: Engine) -> SignedIn | None:
    """The signed-in account of this session, or None."""
    if oidc_providers() and st.user.is_logged_in:
        email = str(st.user.get("email") or st.user.get("sub") or "")
        if email:
            return SignedIn(email, role_of(engine, email), "oidc")
    account = st.session_state.get(SESSION_KEY)
    return account if isinstance(account, SignedIn) else None


def sign_out() -> None:
    account = st.session_state.pop(SESSION_KEY, None)
    if account is None and oidc_providers():
        st.logout()
    st.rerun()


def sign_in_page(engine: Engine) -> None:
    """The page shown until someone signs in."""
    st.title("Sign in to Sluice")
    for provider in oidc_providers():
        label = f"Sign in with {provider}" if provider else "Sign in with your organisation"
        if st.button(label, key=f"oidc-{provider or 'default'}", type="primary"):
            st.login(provider) if provider else st.login()
    local = [account for account in list_accounts(engine) if account.local and not account.disabled]
    if not local:
        if not oidc_providers():
            st.info(NO_ACCOUNTS)
        return
    failures = st.session_state.get(FAILURES_KEY, [])
    recent = [moment for moment in failures if time.monotonic() - moment < PAUSE_SECONDS]
    with st.form("sign-in"):
        username = st.text_input("Account", key="sign-in-username")
        password = st.text_input("Password", type="password", key="sign-in-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if not submitted:
        return
    if len(recent) >= MAX_FAILURES:
        st.error("Too many wrong passwords: wait a minute before trying again.")
        return
    account = authenticate(engine, username.strip(), password)
    if account is None:
        st.session_state[FAILURES_KEY] = [*recent, time.monotonic()]
        st.error("Wrong account name or password.")
        return
    st.session_state[SESSION_KEY] = SignedIn(account.username, account.role, "password")
    st.session_state.pop(FAILURES_KEY, None)
    st.rerun()
