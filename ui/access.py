"""Who may do what on a shared dashboard: sign-in, the allow-lists, which server paths open, upload quotas.

Sign-in goes through Streamlit's own OpenID Connect support (st.login/st.user/st.logout) and is off unless
secrets.toml has an `[auth]` section: a laptop's `streamlit run app.py` opens straight onto the demo. On:
every page needs a signed-in user (app.py calls `gate()` before any page runs), the sidebar says who it is
and offers sign-out, and two optional allow-lists in `[vitdash]` narrow who may use the dashboard
(`allowed_users`) and who may save uploads into the shared library (`library_writers`). Entries are exact
e-mail addresses or "@domain" for everyone there; an empty or missing list lets in every user the identity
provider accepts. The allow-lists are checked by this code only: restrict the client at the identity
provider too where it can (see the README).

In shared mode (sign-in on, or $VITDASH_ALLOWED_ROOTS set) a typed server path opens only under the model
folders and the library (`vitdash.load.confine`); on a laptop any path does.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import streamlit as st
from streamlit.runtime import Runtime

from ui.jobs import session_id
from ui.state import configured_dirs
from vitdash.load.confine import confine, server_roots, shared_mode
from vitdash.load.uploads import shared_quota


def _secret_section(name: str) -> Mapping | None:
    try:
        section = st.secrets.get(name)
    except Exception:  # noqa: BLE001 - no secrets.toml at all, or one that does not parse: no section
        return None
    return section if isinstance(section, Mapping) else None


def auth_enabled() -> bool:
    """True when secrets.toml configures sign-in (an `[auth]` section)."""
    return _secret_section("auth") is not None


def _allow_list(key: str) -> list[str]:
    entries = (_secret_section("vitdash") or {}).get(key, [])
    if isinstance(entries, str):
        entries = [entries]
    return [str(e).strip().lower() for e in entries if str(e).strip()]


def is_allowed(email: str | None, allowed: Iterable[str]) -> bool:
    """An exact (case-insensitive) address, or "@domain" for everyone at that domain (not its subdomains).

    An empty list admits every signed-in user; a user without an e-mail is refused by any non-empty list.
    """
    allowed = list(allowed)
    if not allowed:
        return True
    if not email or "@" not in email:
        return False
    email = email.strip().lower()
    domain = "@" + email.rsplit("@", 1)[1]
    return any(entry == email or (entry.startswith("@") and entry == domain) for entry in allowed)


def _md(text: object) -> str:
    """Claims come from the identity provider: show them literally, not as Markdown."""
    return re.sub(r"([\\`*_{}\[\]<>()#+\-.!|~:$])", r"\\\1", str(text))


def _claim(key: str) -> object:
    return st.user.to_dict().get(key)  # st.user raises AttributeError for a claim the provider did not send


def _verified_email() -> str | None:
    email = _claim("email")
    if _claim("email_verified") is False:  # a provider that says the address is unverified is not trusted on it
        return None
    return email if isinstance(email, str) else None


def current_user() -> str:
    """Who is signed in, as the history and the library record it: the verified e-mail, else the subject id;
    '' when sign-in is off (a laptop) or nobody is signed in."""
    if not auth_enabled() or not _claim("is_logged_in"):
        return ""
    return _verified_email() or str(_claim("sub") or "")


def may_save_to_library() -> bool:
    """Whether this user is on `[vitdash] library_writers` (everyone may when the list is empty or sign-in off)."""
    return not auth_enabled() or is_allowed(_verified_email(), _allow_list("library_writers"))


def gate() -> bool:
    """The sign-in screen, the refusal, or the sidebar's user box; True when the visitor may see the pages.

    Call it once per run before `page.run()`. Without `[auth]` it does nothing and returns True.
    """
    if not auth_enabled():
        return True
    if not _claim("is_logged_in"):
        st.title("vitdash")
        st.write("This dashboard is shared within the team: sign in to continue.")
        st.button("Sign in", type="primary", on_click=st.login, key="vitdash_sign_in")
        return False

    email, name = _claim("email"), _claim("name")
    with st.sidebar:
        st.caption("Signed in as")
        st.markdown(f"**{_md(name or email or _claim('sub') or 'unknown user')}**")
        if name and email and email != name:
            st.caption(_md(email))
        st.button("Sign out", on_click=st.logout, key="vitdash_sign_out")

    email = _verified_email()
    if not is_allowed(email, _allow_list("allowed_users")):
        st.title("vitdash")
        st.error(f"Access denied: {_md(email or 'this account')} is not on this dashboard's list of allowed users. "
                 "Sign out and use another account, or ask the dashboard's owner to add you to "
                 "`[vitdash] allowed_users`.")
        return False
    return True


def server_path(text: str) -> str:
    """A typed server path as it should be opened: in shared mode resolved and confined to the roots (else
    VitdashError with one message whatever the path), on a laptop as typed."""
    if not shared_mode(auth_enabled()):
        return text.strip()
    return str(confine(text, server_roots(configured_dirs())))


def hold_uploads(nbytes: int) -> None:
    """Tell the per-user quota what this session's uploads hold now (VitdashError when it would pass it)."""
    quota = shared_quota()
    if Runtime.exists():
        runtime = Runtime.instance()
        quota.prune(runtime.is_active_session)
    quota.hold(current_user(), session_id(), nbytes)
