"""The S3 artifact location: plan summaries and the applied log, copied beside the S3 state backend.

With ``backend = { kind = "s3", ... }`` every plan's reviewable artifacts and the applied log are
copied to ``s3://<bucket>/<key_prefix>/plans/``: a pipeline's runner is thrown away after each job,
the bucket is where auditors find the history. Plan files (``*.tfplan``) stay local: they can embed
values Terraform considers sensitive. botocore errors become ``BackendError`` here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tenantctl.errors import BackendError
from tenantctl.fsutil import atomic_write_bytes
from tenantctl.history.chain import LOG_FILE
from tenantctl.model.types import Backend

PUBLISHED = ("manifest.json", "summary.json", "summary.md", "audit.json", "apply.json", "postgres.json")


def artifact_prefix(backend: Backend) -> str:
    return f"{backend.key_prefix.strip('/')}/plans/" if backend.key_prefix.strip("/") else "plans/"


def location(backend: Backend) -> str:
    return f"s3://{backend.bucket}/{artifact_prefix(backend)}"


def publish(s3: Any, backend: Backend, plans_dir: Path, plan_id: str) -> int:
    """Copy one plan's artifacts and the applied log; returns how many objects were written."""
    from botocore.exceptions import BotoCoreError, ClientError

    prefix = artifact_prefix(backend)
    uploads = [(plans_dir / plan_id / name, f"{prefix}{plan_id}/{name}") for name in PUBLISHED]
    uploads.append((plans_dir / LOG_FILE, prefix + LOG_FILE))
    written = 0
    try:
        for path, key in uploads:
            if path.is_file():
                s3.put_object(Bucket=backend.bucket, Key=key, Body=path.read_bytes(), ServerSideEncryption="AES256")
                written += 1
    except (BotoCoreError, ClientError) as error:
        raise BackendError(f"could not copy plan {plan_id}'s artifacts to {location(backend)}: {error}",
                           hint="check the bucket and your credentials, then run `tenantctl plans publish "
                                f"{plan_id}`") from error
    return written


def download(s3: Any, backend: Backend, destination: Path) -> int:
    """Fetch every published artifact into ``destination`` (a plans directory); returns the object count."""
    from botocore.exceptions import BotoCoreError, ClientError

    prefix = artifact_prefix(backend)
    count = 0
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=backend.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                relative = item["Key"][len(prefix):]
                parts = relative.split("/")
                if not relative or ".." in parts or (len(parts) == 2 and parts[1] not in PUBLISHED) or len(parts) > 2:
                    continue  # only what publish writes: nothing can escape the destination
                body = s3.get_object(Bucket=backend.bucket, Key=item["Key"])["Body"].read()
                atomic_write_bytes(destination / relative, body)
                count += 1
    except (BotoCoreError, ClientError) as error:
        raise BackendError(f"could not read the plan history at {location(backend)}: {error}") from error
    return count
