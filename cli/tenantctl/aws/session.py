"""boto3 sessions and clients for the selected target: real AWS, or the local moto server.

The one place that decides where boto3 talks to; Secrets Manager, S3 publishing and the backend
checks all take clients from here. botocore exceptions are translated by the callers' adapters.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tenantctl.local.moto import LOCAL_CREDENTIALS
from tenantctl.model.types import Settings

if TYPE_CHECKING:
    import boto3

# boto3 is imported lazily: it costs ~0.5 s, and `tenantctl plan` with nothing to do must stay fast.


@dataclass(frozen=True)
class AwsTarget:
    """Where AWS calls go: ``endpoint_url`` is the moto server on the local target, else None."""

    region: str
    endpoint_url: str | None = None

    @property
    def is_local(self) -> bool:
        return self.endpoint_url is not None

    def env(self) -> dict[str, str]:
        """Environment for subprocesses (terraform) talking to this target."""
        env = {"AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region}
        if self.endpoint_url is not None:
            env.update(LOCAL_CREDENTIALS)
            env["TF_VAR_aws_endpoint"] = self.endpoint_url
        return env


def target_for(settings: Settings, moto_url: str | None = None) -> AwsTarget:
    """The AWS target of ``settings``; the local target needs the moto server's URL."""
    if settings.target == "local":
        if moto_url is None:
            raise ValueError("the local target needs a moto server URL (tenantctl.local.moto.ensure_moto)")
        return AwsTarget(region=settings.region, endpoint_url=moto_url)
    if settings.aws_endpoint_url:  # the aws target's code paths against a stand-in (LocalStack, moto)
        return AwsTarget(region=settings.region, endpoint_url=settings.aws_endpoint_url.rstrip("/"))
    return AwsTarget(region=settings.region)


def session(target: AwsTarget) -> boto3.Session:
    import boto3

    if target.is_local:
        return boto3.Session(
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=target.region,
        )
    return boto3.Session(region_name=target.region or os.environ.get("AWS_REGION"))


def client(target: AwsTarget, service: str) -> Any:
    """A boto3 client for ``service`` on ``target`` (typed ``Any``: boto3 clients are dynamic)."""
    from botocore.config import Config

    retries = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10, read_timeout=60)
    factory: Any = session(target).client  # the stubs overload on literal service names; ours is dynamic
    return factory(service, endpoint_url=target.endpoint_url, config=retries)
