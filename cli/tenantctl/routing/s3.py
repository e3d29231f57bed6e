"""Publish routing maps to S3 and load them back (a fleet of proxies reads one object).

boto3 errors are translated here into ``BackendError``. The endpoint can be overridden with
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (boto3 honours them), which is how tests use moto.
"""

from __future__ import annotations

from typing import Any, NamedTuple
from urllib.parse import urlparse

from tenantctl.errors import BackendError, InputError
from tenantctl.routing.document import RoutingMap, serialize


class S3Object(NamedTuple):
    data: bytes
    etag: str


def split_url(url: str) -> tuple[str, str]:
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise InputError(f"{url}: expected s3://BUCKET/KEY")
    return parsed.netloc, parsed.path.lstrip("/")


def _client(client: Any | None) -> Any:
    if client is not None:
        return client
    import boto3

    return boto3.client("s3")


def publish_map(url: str, routing_map: RoutingMap, *, client: Any | None = None) -> str:
    """Upload the map (one PUT: readers see the old or the new object, never half). Returns the ETag."""
    import botocore.exceptions

    bucket, key = split_url(url)
    try:
        response = _client(client).put_object(
            Bucket=bucket, Key=key, Body=serialize(routing_map), ContentType="application/json",
            Metadata={"serial": str(routing_map.serial), "checksum": routing_map.checksum},
        )
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        raise BackendError(f"cannot publish routing map to {url}: {error}") from None
    return str(response.get("ETag", ""))


def fetch_map(url: str, *, client: Any | None = None, if_none_match: str | None = None) -> S3Object:
    """Download the map object. With ``if_none_match``, returns empty data when it is unchanged."""
    import botocore.exceptions

    bucket, key = split_url(url)
    arguments: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if if_none_match:
        arguments["IfNoneMatch"] = if_none_match
    try:
        response = _client(client).get_object(**arguments)
    except botocore.exceptions.ClientError as error:
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 304:
            return S3Object(b"", if_none_match or "")
        raise BackendError(f"cannot load routing map from {url}: {error}") from None
    except botocore.exceptions.BotoCoreError as error:
        raise BackendError(f"cannot load routing map from {url}: {error}") from None
    return S3Object(response["Body"].read(), str(response.get("ETag", "")))
