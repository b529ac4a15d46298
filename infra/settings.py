"""Typed settings for every component, read from ``ENCLAVE_*`` environment variables.

One object, validated at start-up. A bad value stops the process with a message that names the
variable; default secrets are refused outside development mode.
"""

from __future__ import annotations

import enum
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET = "development-only-secret-change-me"  # noqa: S105 - refused outside development
DEFAULT_S3_SECRET = "development-only-s3-secret"  # noqa: S105 - refused outside development
SUPPORTED_LANGUAGES = ("en", "es", "bg", "pl", "fr", "nl")


class Environment(enum.StrEnum):
    """Where the process runs; decides how strict the start-up checks are."""

    development = "development"
    test = "test"
    production = "production"


class StorageBackend(enum.StrEnum):
    """Object-storage implementation."""

    local = "local"
    s3 = "s3"


class KeyBackendKind(enum.StrEnum):
    """Key-management implementation."""

    file = "file"
    vault = "vault"


class SmtpTls(enum.StrEnum):
    """How the connection to the SMTP server is protected."""

    none = "none"
    starttls = "starttls"
    ssl = "ssl"


class SettingsError(Exception):
    """Raised with one readable line per bad setting."""


class Settings(BaseSettings):
    """Every setting of the product. See README.md for the full table."""

    model_config = SettingsConfigDict(
        env_prefix="ENCLAVE_",
        env_file=None,
        extra="ignore",
        validate_default=True,
    )

    environment: Environment = Field(
        Environment.development,
        description="development, test or production. Production refuses default secrets and demo accounts.",
    )
    data_dir: Path = Field(
        Path("var"),
        description="Folder for the embedded default: SQLite file, local object storage, key files.",
    )
    database_url: str = Field(
        "",
        description="SQLAlchemy URL. Empty means an SQLite file in data_dir. "
        "PostgreSQL: postgresql+psycopg://user:password@host:5432/db.",
    )
    database_pool_size: Annotated[int, Field(ge=1, le=200)] = Field(
        5, description="Connections kept open per process (PostgreSQL only)."
    )
    broker_url: str = Field(
        "",
        description="Celery broker URL, e.g. redis://127.0.0.1:6379/0. Empty runs tasks in-process.",
    )
    result_backend_url: str = Field(
        "", description="Celery result backend. Empty uses the broker URL (Redis) or none in-process."
    )
    storage_backend: StorageBackend = Field(
        StorageBackend.local, description="Object storage: local (encrypted files in a folder) or s3."
    )
    storage_local_path: Path | None = Field(
        None, description="Folder of the local object store. Empty means data_dir/objects."
    )
    s3_endpoint: str = Field("", description="S3 endpoint as host:port (no scheme), e.g. minio:9000.")
    s3_access_key: str = Field("", description="S3 access key id.")
    s3_secret_key: SecretStr = Field(SecretStr(""), description="S3 secret access key.")
    s3_bucket: str = Field("letscare-enclave", description="S3 bucket holding every object.")
    s3_region: str = Field("us-east-1", description="S3 region name sent in signatures.")
    s3_secure: bool = Field(True, description="Use HTTPS to reach the S3 endpoint.")
    s3_ca_bundle: Path | None = Field(
        None, description="PEM file of certificate authorities trusted for the S3 endpoint."
    )
    ingest_async_threshold_bytes: Annotated[int, Field(ge=0)] = Field(
        64 * 1024 * 1024,
        description="A dataset upload over HTTP larger than this is stored encrypted as a staging object "
        "and ingested by a worker (202 with a job to poll); smaller ones are ingested at once.",
    )
    key_backend: KeyBackendKind = Field(
        KeyBackendKind.file, description="Key management: file (key files in a folder) or vault (transit)."
    )
    key_dir: Path | None = Field(None, description="Folder of key files. Empty means data_dir/keys.")
    vault_addr: str = Field("", description="Vault/OpenBao address, e.g. https://vault:8200.")
    vault_token: SecretStr = Field(SecretStr(""), description="Vault/OpenBao token for the transit engine.")
    vault_transit_mount: str = Field("transit", description="Mount path of the transit secrets engine.")
    vault_ca_bundle: Path | None = Field(None, description="PEM file trusted for the Vault endpoint.")
    secret_key: SecretStr = Field(
        SecretStr(DEFAULT_SECRET),
        description="Secret for signed links and CSRF tokens (at least 32 characters in production).",
    )
    public_url: str = Field(
        "http://127.0.0.1:8000", description="Address families and staff use to reach the web pages."
    )
    default_language: str = Field("en", description="Language used when the browser asks for none we have.")
    log_level: str = Field("INFO", description="Minimum log level: DEBUG, INFO, WARNING, ERROR.")
    log_json: bool = Field(True, description="Write logs as JSON lines (false: human-readable console).")
    frame_cache_bytes: Annotated[int, Field(ge=0)] = Field(
        1024**3,
        description="Memory for decrypted dataset versions kept by a process for queries (bytes); "
        "least recently used go first, 0 keeps none.",
    )
    audit_retention_days: Annotated[int, Field(ge=365)] = Field(
        5 * 365, description="How long audit ledger entries are kept, in days (at least one year)."
    )
    audit_checkpoint_interval_seconds: Annotated[int, Field(ge=10)] = Field(
        3600, description="How often Celery beat signs an audit checkpoint."
    )
    project_second_approval_epsilon: Annotated[Decimal, Field(gt=0, le=100)] = Field(
        Decimal("2.0"),
        description="A research project granted a privacy budget (ε) above this needs a second approver "
        "(DPO or admin), distinct from the first.",
    )
    dp_async_row_threshold: Annotated[int, Field(ge=0)] = Field(
        500_000,
        description="A DP query on a dataset version with more rows than this runs on the worker "
        "(202 with a job to poll); smaller ones answer at once.",
    )
    token_issuer: str = Field("", description="`iss` claim of access tokens. Empty means the public URL.")
    token_audience: str = Field("letscare-enclave-api", description="`aud` claim of access tokens.")
    access_token_ttl_seconds: Annotated[int, Field(ge=60, le=900)] = Field(
        600, description="Lifetime of access tokens in seconds (at most 15 minutes)."
    )
    refresh_token_ttl_seconds: Annotated[int, Field(ge=300, le=30 * 86400)] = Field(
        12 * 3600, description="Lifetime of a refresh token in seconds; each use issues a new one."
    )
    login_failures_before_delay: Annotated[int, Field(ge=1, le=100)] = Field(
        3, description="Failed sign-ins for one user name before each further attempt must wait (doubling)."
    )
    login_max_failures_per_account: Annotated[int, Field(ge=1, le=1000)] = Field(
        5, description="Failed sign-ins for one user name that lock it out for the lockout time."
    )
    login_max_failures_per_address: Annotated[int, Field(ge=1, le=10000)] = Field(
        20, description="Failed sign-ins from one client address that lock it out (delays start at half)."
    )
    login_lockout_seconds: Annotated[int, Field(ge=10, le=86400)] = Field(
        900, description="How long a lockout lasts and how far back failed sign-ins are counted."
    )
    smtp_host: str = Field(
        "",
        description="SMTP server for outgoing email. Empty: messages are written as .eml files to "
        "data_dir/mail-outbox (development and test only; production keeps them queued).",
    )
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = Field(
        587, description="SMTP port (587 for STARTTLS, 465 for SSL, 25 for a local relay)."
    )
    smtp_username: str = Field("", description="SMTP user name. Empty: no authentication.")
    smtp_password: SecretStr = Field(SecretStr(""), description="SMTP password.")
    smtp_tls: SmtpTls = Field(
        SmtpTls.starttls,
        description="none, starttls or ssl. Credentials over none are refused outside development.",
    )
    smtp_from: str = Field(
        "LET'S CARE <no-reply@localhost>",
        description="Sender of outgoing email: an address, optionally with a display name.",
    )
    smtp_timeout_seconds: Annotated[int, Field(ge=1, le=300)] = Field(
        20, description="Timeout of each SMTP network operation, in seconds."
    )
    smtp_max_attempts: Annotated[int, Field(ge=1, le=50)] = Field(
        12, description="Sending attempts (1 min, 2, 4 ... up to 1 h apart) before a message is given up."
    )

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator("default_language")
    @classmethod
    def _supported_language(cls, value: str) -> str:
        if value not in SUPPORTED_LANGUAGES:
            raise ValueError(f"must be one of {', '.join(SUPPORTED_LANGUAGES)}")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: str) -> str:
        if value and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must start with sqlite:// or postgresql+psycopg://")
        if value.startswith(("postgresql://", "postgres://")):
            value = "postgresql+psycopg://" + value.split("://", 1)[1]
        return value

    @field_validator("broker_url", "result_backend_url")
    @classmethod
    def _broker_scheme(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "amqp://", "memory://")):
            raise ValueError("must start with redis://, rediss://, amqp:// or memory://")
        return value

    @field_validator("smtp_from")
    @classmethod
    def _sender_address(cls, value: str) -> str:
        from email.utils import parseaddr

        _, address = parseaddr(value)
        if "@" not in address or any(c in value for c in "\r\n"):
            raise ValueError("must be an address such as 'LET'S CARE <no-reply@example.org>'")
        return value

    @field_validator("s3_endpoint")
    @classmethod
    def _endpoint_without_scheme(cls, value: str) -> str:
        if "://" in value:
            raise ValueError("give host:port without a scheme; TLS is set by ENCLAVE_S3_SECURE")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        problems = self._backend_problems() + self._production_problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _backend_problems(self) -> list[str]:
        problems: list[str] = []
        if self.storage_backend is StorageBackend.s3:
            for name in ("s3_endpoint", "s3_access_key"):
                if not getattr(self, name):
                    problems.append(f"ENCLAVE_{name.upper()}: required when ENCLAVE_STORAGE_BACKEND=s3")
            if not self.s3_secret_key.get_secret_value():
                problems.append("ENCLAVE_S3_SECRET_KEY: required when ENCLAVE_STORAGE_BACKEND=s3")
        if self.key_backend is KeyBackendKind.vault:
            if not self.vault_addr:
                problems.append("ENCLAVE_VAULT_ADDR: required when ENCLAVE_KEY_BACKEND=vault")
            if not self.vault_token.get_secret_value():
                problems.append("ENCLAVE_VAULT_TOKEN: required when ENCLAVE_KEY_BACKEND=vault")
        if (
            self.smtp_host
            and self.smtp_tls is SmtpTls.none
            and self.smtp_username
            and not self.is_development
        ):
            problems.append(
                "ENCLAVE_SMTP_TLS: none would send the SMTP password in clear; use starttls or ssl"
            )
        return problems

    def _production_problems(self) -> list[str]:
        problems: list[str] = []
        if self.environment is Environment.production:
            secret = self.secret_key.get_secret_value()
            if secret == DEFAULT_SECRET:
                problems.append("ENCLAVE_SECRET_KEY: the development default is refused in production")
            elif len(secret) < 32:
                problems.append("ENCLAVE_SECRET_KEY: must be at least 32 characters in production")
            if self.s3_secret_key.get_secret_value() == DEFAULT_S3_SECRET:
                problems.append("ENCLAVE_S3_SECRET_KEY: the development default is refused in production")
            if not self.database_url or self.database_url.startswith("sqlite"):
                problems.append("ENCLAVE_DATABASE_URL: production needs PostgreSQL")
        return problems

    @property
    def effective_database_url(self) -> str:
        """The database URL, defaulting to an SQLite file in the data folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'enclave.db').resolve()}"

    @property
    def effective_storage_path(self) -> Path:
        """Folder of the local object store."""
        return self.storage_local_path or self.data_dir / "objects"

    @property
    def effective_key_dir(self) -> Path:
        """Folder of the key files."""
        return self.key_dir or self.data_dir / "keys"

    @property
    def effective_result_backend(self) -> str:
        """Celery result backend URL."""
        return self.result_backend_url or self.broker_url

    @property
    def tasks_in_process(self) -> bool:
        """True when no broker is configured and tasks run inside the calling process."""
        return not self.broker_url

    @property
    def is_development(self) -> bool:
        """True in development mode, where demo accounts and printed secrets are allowed."""
        return self.environment is Environment.development


def _is_sensitive(name: str) -> bool:
    """Settings whose values must never be echoed back (they may hold credentials)."""
    return any(word in name for word in ("secret", "token", "password", "url", "access_key"))


def describe_validation_error(error: ValidationError) -> str:
    """Turn a pydantic error into one line per bad setting, naming its environment variable."""
    lines = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"]]
        message = str(item["msg"]).removeprefix("Value error, ")
        if loc:
            name = loc[0]
            shown = "" if _is_sensitive(name) else f" (got {item.get('input')!r})"
            lines.append(f"ENCLAVE_{name.upper()}: {message}{shown}")
        else:
            lines.extend(message.split("; "))
    return "\n".join(lines)


def load_settings(**overrides: object) -> Settings:
    """Read and validate the settings; raise SettingsError with a readable message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError("invalid configuration:\n" + describe_validation_error(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
