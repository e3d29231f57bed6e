"""The S3 + DynamoDB state backend on the local target: create its bucket and lock table in moto.

On real AWS the bucket and table are the platform team's to create (they outlive any one tool);
tenantctl only checks nothing here. botocore errors are translated to ``BackendError``.
"""

from __future__ import annotations

from tenantctl.aws.session import AwsTarget, client
from tenantctl.errors import BackendError
from tenantctl.model.types import Backend


def ensure_local_state_backend(target: AwsTarget, backend: Backend) -> None:
    """Create the backend's bucket and DynamoDB lock table in moto if missing (idempotent)."""
    if backend.kind != "s3" or not target.is_local:
        return
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        s3 = client(target, "s3")
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        if backend.bucket not in existing:
            s3.create_bucket(
                Bucket=backend.bucket,
                CreateBucketConfiguration={"LocationConstraint": backend.region or target.region},
            )
        if backend.dynamodb_table:
            dynamodb = client(target, "dynamodb")
            if backend.dynamodb_table not in dynamodb.list_tables().get("TableNames", []):
                dynamodb.create_table(
                    TableName=backend.dynamodb_table,
                    AttributeDefinitions=[{"AttributeName": "LockID", "AttributeType": "S"}],
                    KeySchema=[{"AttributeName": "LockID", "KeyType": "HASH"}],
                    BillingMode="PAY_PER_REQUEST",
                )
    except (BotoCoreError, ClientError) as error:
        raise BackendError(f"could not prepare the local S3 state backend: {error}") from error
