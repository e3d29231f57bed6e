"""Names of the objects tenantctl creates for a tenant. One place, so every engine agrees."""

from __future__ import annotations

from tenantctl.model.types import Settings


def login_role(settings: Settings, tenant: str) -> str:
    return f"{settings.prefix}{tenant}"


def owner_role(settings: Settings, tenant: str) -> str:
    return f"{settings.prefix}{tenant}_owner"


def database(settings: Settings, tenant: str, logical: str) -> str:
    return f"{settings.prefix}{tenant}_{logical}"


def iam_user(settings: Settings, tenant: str) -> str:
    return f"{settings.prefix}{tenant}"


def iam_role(settings: Settings, tenant: str) -> str:
    return f"{settings.prefix}{tenant}-access"


def iam_policy(settings: Settings, tenant: str) -> str:
    return f"{settings.prefix}{tenant}-rds-connect"


def secret_name(settings: Settings, tenant: str) -> str:
    """AWS Secrets Manager name of a password-auth tenant's generated password."""
    return f"tenantctl/{settings.prefix}{tenant}/postgres"


def archived_database(name: str, stamp: str) -> str:
    """Name an offboarded database is renamed to; ``stamp`` is YYYYMMDD."""
    return f"{name}__archived_{stamp}"


def moved_database(name: str, stamp: str) -> str:
    """Name a moved tenant's source database is renamed to (kept for rollback); ``stamp`` is the move's
    UTC start, ``YYYYMMDDtHHMMSSz``."""
    return f"{name}__moved_{stamp}"
