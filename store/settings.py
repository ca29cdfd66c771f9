"""Where Sluice keeps its state and how it reaches its services: one frozen settings object.

`get_settings()` reads it once from the `SLUICE_*` environment; a variant (another home, another store, a Dask
cluster) is `settings.variant(...)` or `settings.with_home(path)`, validated like the original. Flows take one
such object and follow it for everything they write or reach.

The secrets in it (the database password, Label Studio's token and admin password) never leave it in its JSON
form, which is what Prefect stores as a flow run's parameters: there the database URL shows `***` for its
password and the other two show `**********`. A JSON form read back (a deployment run given such a parameter) is
refused, so a masked value can never stand in for the real one; a worker's runs take their secrets from the
worker's own environment.
"""

from __future__ import annotations

import json
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field, field_serializer, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import make_url

PROJECT_ROOT = Path(__file__).resolve().parents[1]

MASK = "**********"
URL_PASSWORD_MASK = "***"
_QUERY_SECRETS = frozenset({"password", "sslpassword", "passfile"})
# query parameters of a service URL whose name holds one of these carry a credential
_SECRET_WORDS = ("password", "passwd", "pwd", "pass", "token", "secret", "key", "auth", "sig", "credential",
                 "session", "jwt", "code", "cookie")


def _secret_name(name: str) -> bool:
    return any(word in name.lower() for word in _SECRET_WORDS)


def masked_url(url: str) -> str:
    """A database URL without its secrets: the password, and any query value that is or may carry one (a
    `password`, libpq `options` naming a password), shown as `***`."""
    parsed = make_url(url)

    def hidden(key: str, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        if key.lower() in _QUERY_SECRETS or _secret_name(key):
            return URL_PASSWORD_MASK
        if key.lower() == "options" and "pass" in str(value).lower():
            return URL_PASSWORD_MASK
        return value

    query = {key: hidden(key, value) for key, value in parsed.query.items()}
    return parsed.set(query=query).render_as_string(hide_password=True)


def masked_service_url(url: str) -> str:
    """A service URL (Label Studio, a Dask scheduler) without its credentials: the password of its user part shown
    as `***` (a user part with no password is a token: all of it `***`) and so is every query value whose name
    says it is a secret (`token`, `api_key`, `password`, ...)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:{URL_PASSWORD_MASK}@{host}" if has_password else f"{URL_PASSWORD_MASK}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, _masked_pairs(parts.query), _masked_pairs(parts.fragment)))


def _masked_pairs(text: str) -> str:
    """A query or fragment (`a=1&token=x`, `a=1;token=x`) with every secret-named value masked; a fragment that is
    not made of pairs is masked whole when it names a secret."""
    if not text:
        return text
    if "=" not in text:
        return URL_PASSWORD_MASK if _secret_name(text) else text
    pairs = parse_qsl(text.replace(";", "&"), keep_blank_values=True)
    return urlencode([(key, URL_PASSWORD_MASK if _secret_name(key) else value) for key, value in pairs], safe="*")


def _holds_masked_credential(url: str) -> bool:
    parts = urlsplit(url)
    userinfo = parts.netloc.rsplit("@", 1)[0] if "@" in parts.netloc else ""
    values = [value for text in (parts.query, parts.fragment)
              for _, value in parse_qsl(text.replace(";", "&"), keep_blank_values=True)]
    return URL_PASSWORD_MASK in userinfo.split(":") or URL_PASSWORD_MASK in values


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def _host_list(text: str) -> list[str]:
    return [name.strip().lower() for name in text.split(",") if name.strip()]


class SluiceSettings(BaseSettings):
    """Settings from `SLUICE_*` environment variables; every field has a working local default. Frozen: a
    variant is a new object (`variant`, `with_home`)."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_", extra="ignore", frozen=True)

    home: Path = Field(default=Path(".sluice"), description="state folder: database, models, reports, Label Studio data")
    database_url: str | None = Field(default=None, repr=False,
                                     description="SQLAlchemy URL; SQLite under `home` when unset")
    labelstudio_url: str | None = Field(default=None, repr=False,
                                        description="an existing Label Studio; the local one when unset")
    labelstudio_token: str | None = Field(
        default=None, max_length=40, min_length=6, repr=False,
        description="the API token; for the local server, generated per installation when unset; required for a "
                    "server elsewhere")
    labelstudio_port: int = 18080
    labelstudio_venv: Path = PROJECT_ROOT / ".venv-labelstudio"
    labelstudio_username: str = "admin@sluice.local"
    labelstudio_password: str | None = Field(
        default=None, repr=False, description="the local server's admin password; generated per installation")
    labelstudio_project: str = "Sluice review queue"
    labelstudio_home: Path | None = Field(default=None, description="Label Studio's data; `home`/labelstudio when unset")
    task_runner: Literal["threads", "dask"] = Field(
        default="threads", description="where the flows' batch tasks run: threads, or a Dask cluster")
    dask_address: str | None = Field(default=None, repr=False,
                                     description="a Dask scheduler; a local cluster when unset")
    dask_workers: int = Field(default=2, ge=1, le=64, description="worker processes of the local Dask cluster")
    batch_threads: int | None = Field(
        default=None, ge=1, le=64,
        description="batch tasks a flow runs at once in threads (task_runner threads); each uses one database "
                    "connection at a time, and the store's connection pool holds that many plus the flow's own; "
                    "unset: 1 on a SQLite store, 4 on a database server (`default_batch_threads`)")
    store_lock_timeout: float = Field(default=900.0, gt=0,
                                      description="seconds a flow waits for another one to release the store")
    ui_allowed_hosts: str = Field(
        default="", description="host names the console answers besides the loopback ones (comma-separated, "
                                "`*.example.com` patterns allowed): the names a reverse proxy in front of it forwards")

    @field_validator("labelstudio_token", "labelstudio_password")
    @classmethod
    def _not_masked(cls, value: str | None) -> str | None:
        if value == MASK:
            raise ValueError("is the masked form of a secret (as Prefect stores a settings parameter), not the "
                             "secret itself: set it in the environment of the process that runs the flow")
        return value

    @field_validator("ui_allowed_hosts")
    @classmethod
    def _host_names(cls, value: str) -> str:
        for name in _host_list(value):
            if name == "*" or "*" in name[1:] or (name.startswith("*") and not name.startswith("*.")) \
                    or any(c in name for c in "/@: "):
                raise ValueError(f"{name!r} is not a host name or a `*.example.com` pattern")
        return value

    @property
    def console_hosts(self) -> list[str]:
        """The Host names the console answers: the loopback ones, then `ui_allowed_hosts`."""
        return list(dict.fromkeys([*LOOPBACK_HOSTS, *_host_list(self.ui_allowed_hosts)]))

    @field_validator("database_url")
    @classmethod
    def _url_not_masked(cls, value: str | None) -> str | None:
        if value and (make_url(value).password == URL_PASSWORD_MASK
                      or URL_PASSWORD_MASK in make_url(value).query.values()):
            raise ValueError("holds a masked password (as Prefect stores a settings parameter), not the password "
                             "itself: set SLUICE_DATABASE_URL in the environment of the process that runs the flow")
        return value

    @field_validator("labelstudio_url", "dask_address")
    @classmethod
    def _service_url_not_masked(cls, value: str | None) -> str | None:
        if value and _holds_masked_credential(value):
            raise ValueError("holds a masked credential (as Prefect stores a settings parameter), not the credential "
                             "itself: set it in the environment of the process that runs the flow")
        return value

    @field_serializer("labelstudio_url", "dask_address", when_used="json")
    def _mask_service_url(self, value: str | None) -> str | None:
        return masked_service_url(value) if value else None

    def __repr_args__(self) -> Any:
        """The repr shows where things are, never a credential: URLs masked, secrets left out."""
        for name, value in super().__repr_args__():
            yield name, value
        yield "database_url", self.shown_database_url
        if self.labelstudio_url:
            yield "labelstudio_url", masked_service_url(self.labelstudio_url)
        if self.dask_address:
            yield "dask_address", masked_service_url(self.dask_address)

    @field_serializer("labelstudio_token", "labelstudio_password", when_used="json")
    def _mask(self, value: str | None) -> str | None:
        return None if value is None else MASK

    @field_serializer("database_url", when_used="json")
    def _mask_url(self, value: str | None) -> str | None:
        return masked_url(value) if value else None

    def variant(self, **changes: Any) -> SluiceSettings:
        """These settings with `changes`, validated as a whole (the environment is not read again)."""
        unknown = set(changes) - set(type(self).model_fields)
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}; known: {sorted(type(self).model_fields)}")
        return type(self).model_validate({**self.model_dump(), **changes})

    def with_home(self, home: Path | str) -> SluiceSettings:
        """These settings with their state under `home`: its own SQLite database, models and reports (an explicit
        `labelstudio_home` stays where it was)."""
        return self.variant(home=Path(home), database_url=None)

    @property
    def resolved_home(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_home / 'sluice.db'}"

    @property
    def resolved_batch_threads(self) -> int:
        """The batch tasks a flow runs at once in threads on these settings' own store."""
        return self.batch_threads_for(self.resolved_database_url)

    def batch_threads_for(self, url: str) -> int:
        """The batch tasks a flow runs at once in threads on the store at `url`: the setting, or that store's
        default (`default_batch_threads`)."""
        return self.batch_threads or default_batch_threads(url)

    @property
    def shown_database_url(self) -> str:
        """The database URL with its password hidden, for messages and logs."""
        return masked_url(self.resolved_database_url)

    @property
    def shown_labelstudio_url(self) -> str:
        """Label Studio's URL without its credentials, for messages and logs."""
        return masked_service_url(self.resolved_labelstudio_url)

    @property
    def labelstudio_data_dir(self) -> Path:
        if self.labelstudio_home is not None:
            return self.labelstudio_home.expanduser().resolve()
        return self.resolved_home / "labelstudio"

    @property
    def resolved_labelstudio_url(self) -> str:
        return self.labelstudio_url or f"http://127.0.0.1:{self.labelstudio_port}"

    def labelstudio_credentials(self) -> LabelStudioCredentials:
        """The Label Studio admin token and password Sluice uses: the configured ones (SLUICE_LABELSTUDIO_TOKEN,
        SLUICE_LABELSTUDIO_PASSWORD); else, for the local server, those of its data folder, generated at first use
        and kept there readable by this user only (`labelstudio_secrets`). A server elsewhere (a URL that is not
        this machine's) needs an explicit token: nothing built in is ever sent to it."""
        if self.labelstudio_url and self.labelstudio_token:  # a server of its own: its token is all Sluice sends
            return LabelStudioCredentials(self.labelstudio_token, self.labelstudio_password or "")
        if self.labelstudio_url and not is_local_url(self.labelstudio_url):
            raise ValueError(f"SLUICE_LABELSTUDIO_TOKEN is required for the Label Studio at "
                             f"{masked_service_url(self.labelstudio_url)}: give the API token of an account there")
        if self.labelstudio_token and self.labelstudio_password:
            return LabelStudioCredentials(self.labelstudio_token, self.labelstudio_password)
        stored = labelstudio_secrets(self.labelstudio_data_dir)
        return LabelStudioCredentials(self.labelstudio_token or stored.token,
                                      self.labelstudio_password or stored.password)

    @property
    def models_dir(self) -> Path:
        return self.resolved_home / "models"

    @property
    def reports_dir(self) -> Path:
        return self.resolved_home / "reports"


class LabelStudioCredentials(NamedTuple):
    token: str
    password: str


CREDENTIALS_FILE = "sluice-credentials.json"
# What every local server was created with before credentials were generated per installation: a data folder that
# already holds Label Studio's database and no credentials file keeps them (its admin user was made with them).
LEGACY_CREDENTIALS = LabelStudioCredentials("sluice-local-token-7f3a9c2e1b", "sluice-admin-pass")


# Batch tasks at once, unless set. A SQLite store does all its work inside the flow's own process, under one
# writer lock and Python's one interpreter lock: concurrent batch tasks only wait on each other there. A database
# server does its share in its own processes, which overlap with the flow's. Measured on a 2-core machine at
# 200,000 items (bench/results/ingest-route-200k.md, "batch threads"): SQLite's route took 4.0 s with one
# thread, 5.2 s with two and 5.8 s with four; PostgreSQL's 5.4-5.7 s with one and 4.2 s with four.
SQLITE_BATCH_THREADS = 1
SERVER_BATCH_THREADS = 4


def default_batch_threads(url: str) -> int:
    """Batch tasks a flow runs at once on the store at `url` when `batch_threads` is unset."""
    return SQLITE_BATCH_THREADS if url.startswith("sqlite") else SERVER_BATCH_THREADS


def is_local_url(url: str) -> bool:
    """Whether `url` names this machine (loopback), where the local server's own credentials may go."""
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def labelstudio_secrets(data_dir: Path) -> LabelStudioCredentials:
    """The local Label Studio's admin token and password, kept in `data_dir`/sluice-credentials.json (mode 0600):
    read, or generated once (40 hex characters of token, a random password) and written atomically, so two
    processes starting at once agree. A data folder created before this file existed keeps `LEGACY_CREDENTIALS`."""
    path = data_dir / CREDENTIALS_FILE
    for _ in range(2):
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
            return LabelStudioCredentials(str(stored["token"]), str(stored["password"]))
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path} is not a Sluice credentials file ({error}); remove it only together with the "
                             "Label Studio data beside it") from None
        legacy = (data_dir / "label_studio.sqlite3").exists()
        fresh = LEGACY_CREDENTIALS if legacy else LabelStudioCredentials(secrets.token_hex(20),
                                                                          secrets.token_urlsafe(24))
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue  # another process wrote it first: read theirs
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(fresh._asdict(), out)
        return fresh
    raise ValueError(f"cannot read or create {path}")


def signing_key_path() -> Path:
    """Where the model-signing key lives: SLUICE_SIGNING_KEY_FILE, else sluice/signing.key under the user's config
    folder (XDG_CONFIG_HOME or ~/.config): outside every store, so write access to a store is not enough to
    sign a model."""
    named = os.environ.get("SLUICE_SIGNING_KEY_FILE")
    if named:
        return Path(named).expanduser()
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config").expanduser()
    return config / "sluice" / "signing.key"


def signing_key() -> bytes:
    """The key that signs model artifacts (HMAC-SHA256): SLUICE_SIGNING_KEY (at least 64 hex digits, for workers
    that share one), else the key file (`signing_key_path`), made with 32 random bytes and mode 0600 at first use.
    A key file others may read is refused: with the key, anyone could sign a model that runs code."""
    given = os.environ.get("SLUICE_SIGNING_KEY")
    if given:
        try:
            key = bytes.fromhex(given.strip())
        except ValueError:
            key = b""
        if len(key) < 32:
            raise ValueError("SLUICE_SIGNING_KEY must be at least 64 hex digits (32 bytes)")
        return key
    path = signing_key_path()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # written whole under a name of its own, then linked into place: a process starting at the same moment
        # finds either no key or the whole key, never an empty file
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        handle = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(handle, "w") as out:
                out.write(secrets.token_hex(32) + "\n")
            os.link(draft, path)
        except FileExistsError:
            pass  # another process made it first
        finally:
            draft.unlink(missing_ok=True)
    if path.stat().st_mode & 0o077:
        raise ValueError(f"the model-signing key {path} may be read by others: chmod 600 it (or make a new one "
                         "and run `sluice models sign`)")
    try:
        key = bytes.fromhex(path.read_text().strip())
    except ValueError:
        key = b""
    if len(key) < 32:
        raise ValueError(f"{path} is not a model-signing key (64 or more hex digits)")
    return key


@lru_cache(maxsize=1)
def get_settings() -> SluiceSettings:
    """The settings of this process's environment, read once."""
    return SluiceSettings()


def settings_or_environment(settings: SluiceSettings | None) -> SluiceSettings:
    """`settings`, or the environment's when None (a flow run from a deployment, a call without settings)."""
    return get_settings() if settings is None else settings
