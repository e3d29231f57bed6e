"""Archive a tenant database with `pg_dump -Fc`, checksummed, to a local directory or S3; restore it.

The dump is written to a partial file in the archive's staging directory (``<archive>/.partial/`` for a
local archive, so the final rename stays on one file system; given by the caller for S3), checksummed
(sha256) while it is still private, then renamed (or uploaded with the checksum as metadata). A dump
interrupted by a crash leaves its partial file there; the resumed offboarding removes it before dumping
again (`discard_partials`), so nothing is left behind. `verify` recomputes the checksum before anything
is allowed to drop the archived database.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenantctl.errors import BackendError, ExternalCommandError, InputError
from tenantctl.fsutil import fsync_dir

PARTIAL_DIR = ".partial"  # inside a local archive: dumps being written


@dataclass(frozen=True)
class DumpSource:
    """Where to dump from: a cluster endpoint and an admin login (the password travels by env only)."""

    host: str
    port: int
    user: str
    password: str
    tls_env: tuple[tuple[str, str], ...] = ()  # PGHOSTADDR, PGSSLMODE, PGSSLROOTCERT of the cluster connection

    def env(self) -> dict[str, str]:
        return {**os.environ, **dict(self.tls_env), "PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "10"}


@dataclass(frozen=True)
class ArchivedDump:
    database: str
    location: str  # a local path or s3://bucket/key
    sha256: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"database": self.database, "location": self.location, "sha256": self.sha256, "size": self.size}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_client_tool(argv: list[str], env: dict[str, str]) -> None:
    """Run pg_dump/pg_restore/psql; a failure shows the command, its exit code and stderr."""
    try:
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=3600)
    except FileNotFoundError:
        raise BackendError(f"{argv[0]} not found: install the PostgreSQL client tools") from None
    if result.returncode != 0:
        raise ExternalCommandError(argv, result.returncode, result.stderr)


class Archive:
    """An archive location: a local directory, or ``s3://bucket/prefix`` (boto3 client given)."""

    def __init__(self, location: str, s3_client: Any | None = None, *, staging: Path | None = None) -> None:
        self.location = location
        self.s3: Any = s3_client
        if location.startswith("s3://"):
            bucket, _, prefix = location[5:].partition("/")
            if not bucket:
                raise InputError(f"archive location {location!r} names no bucket")
            if s3_client is None:
                raise InputError("an s3:// archive needs AWS access (boto3 client)")
            self.bucket, self.prefix = bucket, prefix.strip("/")
            self.staging = staging or Path(tempfile.gettempdir()) / "tenantctl-partial-dumps"
        else:
            self.staging = staging or Path(location) / PARTIAL_DIR

    @property
    def is_s3(self) -> bool:
        return self.location.startswith("s3://")

    def dump(self, source: DumpSource, database: str, name: str) -> ArchivedDump:
        """Dump ``database`` into the archive as ``name`` (a relative path such as tenant/stamp/db.dump)."""
        partial = self.staging / f"{name}.{os.getpid()}-{secrets.token_hex(4)}.partial"
        self._remove_partials(partial.parent, f"{Path(name).name}.")  # of an interrupted earlier attempt
        partial.parent.mkdir(parents=True, exist_ok=True)
        try:
            run_client_tool(["pg_dump", "-Fc", "--no-password", "-h", source.host, "-p", str(source.port),
                             "-U", source.user, "-d", database, "-f", str(partial)], source.env())
            checksum, size = _sha256(partial), partial.stat().st_size
            if self.is_s3:
                key = f"{self.prefix}/{name}" if self.prefix else name
                with partial.open("rb") as fh:
                    self.s3.put_object(Bucket=self.bucket, Key=key, Body=fh, Metadata={"sha256": checksum})
                return ArchivedDump(database, f"s3://{self.bucket}/{key}", checksum, size)
            dest = Path(self.location) / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            with partial.open("rb") as fh:
                os.fsync(fh.fileno())
            os.replace(partial, dest)
            fsync_dir(dest.parent)
            return ArchivedDump(database, str(dest), checksum, size)
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
            self._prune(partial.parent)

    def discard_partials(self, prefix: str) -> None:
        """Remove whatever interrupted dumps left under ``prefix`` (e.g. tenant/run) in the staging area."""
        shutil.rmtree(self.staging / prefix, ignore_errors=True)
        self._prune((self.staging / prefix).parent)

    def _remove_partials(self, directory: Path, name_prefix: str) -> None:
        if directory.is_dir():
            for stale in directory.glob(f"{glob.escape(name_prefix)}*.partial"):
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()  # a still-running pg_dump of a killed run writes into an unlinked file

    def _prune(self, directory: Path) -> None:
        """Remove ``directory`` and its parents up to the staging directory itself while they are empty."""
        current = directory
        while current == self.staging or self.staging in current.parents:
            try:
                current.rmdir()
            except FileNotFoundError:
                pass
            except OSError:  # not empty: another dump is using it
                return
            current = current.parent

    def fetch(self, dump: ArchivedDump, into: Path) -> Path:
        """A local copy of the dump whose checksum matches the recorded one (raises otherwise)."""
        if dump.location.startswith("s3://"):
            bucket, _, key = dump.location[5:].partition("/")
            local = into / Path(key).name
            try:
                self.s3.download_file(bucket, key, str(local))
            except Exception as error:  # boto3 raises many types; this is the boundary
                raise BackendError(f"cannot download {dump.location}: {error}") from None
        else:
            local = Path(dump.location)
            if not local.exists():
                raise BackendError(f"archived dump {local} is missing")
        actual = _sha256(local)
        if actual != dump.sha256:
            raise BackendError(f"archived dump {dump.location} has checksum {actual}, the ledger recorded "
                               f"{dump.sha256}: refusing to use it")
        return local

    def verify(self, dump: ArchivedDump) -> None:
        with tempfile.TemporaryDirectory(prefix="tenantctl-verify-") as tmp:
            self.fetch(dump, Path(tmp))


def restore_dump(source: DumpSource, dump_file: Path, database: str) -> None:
    """Restore a `pg_dump -Fc` file into an existing (empty) database."""
    run_client_tool(["pg_restore", "--no-password", "--no-owner", "--exit-on-error", "-h", source.host,
                     "-p", str(source.port), "-U", source.user, "-d", database, str(dump_file)], source.env())
