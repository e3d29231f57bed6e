"""Generated Postgres passwords in AWS Secrets Manager (a moto server on the ``local`` target).

``SecretStore`` is the narrow interface the Postgres engine needs; ``SecretsManagerStore`` implements it
over a boto3 ``secretsmanager`` client and translates botocore errors into ``BackendError``;
``MemorySecretStore`` serves fast unit tests. Secret values are JSON in the RDS layout
(``{"engine": "postgres", "username": ..., "password": ...}``) and are never logged.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any, Protocol

from tenantctl.errors import BackendError

PASSWORD_BYTES = 24


class SecretStore(Protocol):
    def names(self, prefix: str) -> frozenset[str]: ...

    def get_password(self, name: str) -> str | None: ...

    def put_password(self, name: str, username: str, password: str) -> None: ...


def generate_password() -> str:
    """URL-safe ASCII (so SASLprep leaves it unchanged and it fits in a connection URI)."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


def get_or_create_password(store: SecretStore, name: str, username: str, *, regenerate: bool = False) -> str:
    password = None if regenerate else store.get_password(name)
    if password is None:
        password = generate_password()
        store.put_password(name, username, password)
    return password


def _secret_document(username: str, password: str) -> str:
    return json.dumps({"engine": "postgres", "username": username, "password": password})


@dataclass
class SecretsManagerStore:
    client: Any  # a boto3 "secretsmanager" client

    def names(self, prefix: str) -> frozenset[str]:
        found: set[str] = set()
        try:
            paginator = self.client.get_paginator("list_secrets")
            for page in paginator.paginate(Filters=[{"Key": "name", "Values": [prefix]}]):
                found.update(entry["Name"] for entry in page.get("SecretList", [])
                             if str(entry["Name"]).startswith(prefix))
        except Exception as error:  # botocore's ClientError / EndpointConnectionError
            raise BackendError(f"cannot list secrets under {prefix!r}: {_describe(error)}") from error
        return frozenset(found)

    def get_password(self, name: str) -> str | None:
        try:
            response = self.client.get_secret_value(SecretId=name)
        except Exception as error:
            if _error_code(error) == "ResourceNotFoundException":
                return None
            raise BackendError(f"cannot read secret {name!r}: {_describe(error)}") from error
        try:
            return str(json.loads(response["SecretString"])["password"])
        except (KeyError, ValueError, TypeError) as error:
            raise BackendError(f"secret {name!r} is not a tenantctl password secret") from error

    def put_password(self, name: str, username: str, password: str) -> None:
        document = _secret_document(username, password)
        try:
            try:
                self.client.create_secret(Name=name, SecretString=document,
                                          Description="tenantctl: Postgres password",
                                          Tags=[{"Key": "managed-by", "Value": "tenantctl"}])
            except Exception as error:
                if _error_code(error) != "ResourceExistsException":
                    raise
                self.client.put_secret_value(SecretId=name, SecretString=document)
        except Exception as error:
            raise BackendError(f"cannot store secret {name!r}: {_describe(error)}") from error


@dataclass
class MemorySecretStore:
    """In-process store for unit tests."""

    values: dict[str, str] = field(default_factory=dict)

    def names(self, prefix: str) -> frozenset[str]:
        return frozenset(name for name in self.values if name.startswith(prefix))

    def get_password(self, name: str) -> str | None:
        return self.values.get(name)

    def put_password(self, name: str, username: str, password: str) -> None:
        self.values[name] = password


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _describe(error: Exception) -> str:
    code = _error_code(error)
    return f"{code}: {error}" if code else str(error) or type(error).__name__
