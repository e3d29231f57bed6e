"""Offboard, restore and purge a tenant: access first, data archived, every step in the ledger.

``offboard`` revokes access (routing entry, login, IAM through the tenant's stack), dumps each tenant
database to the archive, renames the databases to their archived names and finally removes the
tenant's block from the clients file. Each step is recorded in ``.tenantctl/offboarding.jsonl``
before the next starts and each is idempotent, so rerunning after a crash resumes where it stopped.

The native Postgres engine never drops anything; this flow runs its own explicit admin SQL (identifiers
quoted with ``psycopg.sql``). ``purge`` drops an archived database only after re-verifying its dump's
checksum; ``restore`` brings an offboarded tenant back (from the renamed databases, or from the dumps
once purged).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from psycopg import sql

from tenantctl.errors import InputError, RefusedError, TenantctlError
from tenantctl.fsutil import atomic_write_text
from tenantctl.model import model_from_text, naming
from tenantctl.model.desired import desired_tenant
from tenantctl.model.edit import TenantBlock, add_tenant, remove_tenant
from tenantctl.model.types import Model, Tenant
from tenantctl.postgres.catalog import Marker
from tenantctl.postgres.connect import ClusterConnection, connect_admin, translated
from tenantctl.render.snapshot import remove_stack
from tenantctl.terraform import guard
from tenantctl.workflow import deploy
from tenantctl.workflow.archive import Archive, ArchivedDump, DumpSource, restore_dump
from tenantctl.workflow.clusters import cluster_resolver
from tenantctl.workflow.ledger import Entry, Ledger

LEDGER_FILE = deploy.STATE_DIR / "offboarding.jsonl"
DEFAULT_ARCHIVE = deploy.STATE_DIR / "archive"
PARTIAL_DUMPS = deploy.STATE_DIR / "partial-dumps"  # dumps being written before their upload to an s3:// archive
DESTROY_SCRATCH = ".tenantctl-destroy"  # in the stack's work dir: the destroy plan and its inputs
DEFAULT_RETAIN_DAYS = 30
MAX_IDENTIFIER = 63  # PostgreSQL truncates longer names silently: refuse instead

# Ledger steps, in the order the flow runs them.
STARTED = "offboard_started"
ROUTING_REVOKED = "routing_revoked"
LOGIN_DISABLED = "login_disabled"
IAM_REMOVED = "iam_removed"
DUMPED = "database_dumped"
RENAMED = "database_renamed"
FILE_UPDATED = "clients_file_updated"
COMPLETED = "offboard_completed"
RESTORE_STARTED = "restore_started"
RESTORED_DATABASE = "database_restored"
RESTORE_FILE_UPDATED = "restore_clients_file_updated"
LOGIN_ENABLED = "login_enabled"
RESTORE_COMPLETED = "restore_completed"
PURGED_DATABASE = "database_purged"
PURGED = "purge_completed"

Progress = Callable[[str], None]
Statement = tuple[sql.SQL | sql.Composed, tuple[Any, ...]]


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class Run:
    """One offboarding of a tenant, as the ledger tells it."""

    tenant: str
    run_id: str
    started: Entry
    entries: tuple[Entry, ...]

    @property
    def steps(self) -> set[str]:
        return {e.step for e in self.entries}

    def done(self, step: str, **match: Any) -> Entry | None:
        for entry in self.entries:
            if entry.step == step and all(entry.details.get(k) == v for k, v in match.items()):
                return entry
        return None

    @property
    def block(self) -> TenantBlock:
        raw = self.started.details["block"]
        return TenantBlock(name=raw["name"], databases=tuple(raw["databases"]), allowed_ips=tuple(raw["allowed_ips"]),
                           rds_iam_auth=bool(raw["rds_iam_auth"]), tier=raw.get("tier"), cluster=raw.get("cluster"))

    @property
    def databases(self) -> dict[str, str]:
        """Physical database name -> archived name."""
        return dict(self.started.details["databases"])

    @property
    def state(self) -> str:
        """offboarding | offboarded | restoring | restored | purged."""
        steps = self.steps
        if RESTORE_COMPLETED in steps:
            return "restored"
        if PURGED in steps:
            return "purged"
        if RESTORE_STARTED in steps:
            return "restoring"
        if COMPLETED in steps:
            return "offboarded"
        return "offboarding"


def runs(ledger: Ledger, tenant: str | None = None) -> list[Run]:
    """Every offboarding run in the ledger (oldest first), each with its own entries."""
    found: dict[tuple[str, str], list[Entry]] = {}
    for entry in ledger.entries(tenant):
        run_id = entry.details.get("run")
        if isinstance(run_id, str):
            found.setdefault((entry.tenant, run_id), []).append(entry)
    result = []
    for (name, run_id), entries in found.items():
        started = next((e for e in entries if e.step == STARTED), None)
        if started is not None:
            result.append(Run(name, run_id, started, tuple(entries)))
    return sorted(result, key=lambda r: (r.started.at, r.run_id))


def latest_run(ledger: Ledger, tenant: str) -> Run | None:
    found = runs(ledger, tenant)
    return found[-1] if found else None


# --- the admin SQL (one narrow interface to the cluster) ------------------------------------------

class ClusterAdmin:
    """The explicit admin statements of this flow, on one cluster."""

    def __init__(self, connection: ClusterConnection) -> None:
        self.connection = connection

    def _execute(self, what: str, statements: list[Statement]) -> list[Any]:
        rows: list[Any] = []
        with connect_admin(self.connection) as conn, translated(what):
            for statement, params in statements:
                cursor = conn.execute(statement, params)
                if cursor.description is not None:
                    rows.extend(cursor.fetchall())
        return rows

    def database_exists(self, name: str) -> bool:
        rows = self._execute(f"looking up database {name}",
                             [(sql.SQL("SELECT 1 FROM pg_database WHERE datname = %s"), (name,))])
        return bool(rows)

    def role_exists(self, name: str) -> bool:
        rows = self._execute(f"looking up role {name}",
                             [(sql.SQL("SELECT 1 FROM pg_roles WHERE rolname = %s"), (name,))])
        return bool(rows)

    def set_login(self, role: str, login: bool) -> None:
        keyword = sql.SQL("LOGIN" if login else "NOLOGIN")
        statements: list[Statement] = [
            (sql.SQL("ALTER ROLE {} {}").format(sql.Identifier(role), keyword), ())]
        if not login:  # sessions already open keep running after NOLOGIN: end them
            statements.append((sql.SQL("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s"),
                                (role,)))
        self._execute(f"{'enabling' if login else 'disabling'} login of {role}", statements)

    def rename_database(self, old: str, new: str, marker: Marker) -> None:
        """Rename ``old`` and mark it: an archive's marker names its run, so no planner adopts it."""
        self._execute(f"renaming database {old} to {new}", [
            (sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(old)), ()),
            (sql.SQL("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s"), (old,)),
            (sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new)), ()),
            (sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(new), sql.Literal(marker.render())), ()),
            (sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(new)), ()),
        ])

    def database_identity(self, name: str) -> tuple[str, Marker | None] | None:
        """(owner, marker) of database ``name``; None when it does not exist."""
        rows = self._execute(f"looking up database {name}", [(sql.SQL(
            "SELECT pg_get_userbyid(datdba), shobj_description(oid, 'pg_database') FROM pg_database "
            "WHERE datname = %s"), (name,))])
        if not rows:
            return None
        owner, comment = rows[0]
        return str(owner), Marker.parse(comment)

    def create_database(self, name: str, owner: str) -> None:
        self._execute(f"creating database {name}", [
            (sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner)), ())])

    def drop_database(self, name: str) -> None:
        self._execute(f"dropping archived database {name}", [
            (sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)), ())])

    def dump_source(self) -> DumpSource:
        c = self.connection
        tls = tuple((k, v) for k, v in sorted(c.libpq_env().items())
                    if k in ("PGHOSTADDR", "PGSSLMODE", "PGSSLROOTCERT"))
        return DumpSource(c.host, c.connect_port or c.port, c.admin_user, c.admin_password, tls)


def default_archive(model: Model) -> str:
    """``settings.archive``; else beside the Terraform state in S3 (``s3://BUCKET/KEY_PREFIX/archive``); else,
    on the local target only, ``.tenantctl/archive``. Production dumps do not default to an operator's disk."""
    settings = model.settings
    if settings.archive:
        return settings.archive
    if settings.backend.kind == "s3":
        return f"s3://{settings.backend.bucket}/{settings.backend.key_prefix.strip('/')}/archive"
    if settings.target == "aws":
        raise InputError("the aws target archives offboarded databases to S3, and no bucket is known",
                         hint='set settings.archive = "s3://BUCKET/PREFIX" (or use the s3 state backend), '
                              "or pass --archive")
    return str(DEFAULT_ARCHIVE)


def cluster_admin(root: Path, model: Model, cluster: str) -> ClusterAdmin:
    return ClusterAdmin(cluster_resolver(model, root / deploy.STATE_DIR).resolve(cluster))


def open_archive(root: Path, model: Model, location: str) -> Archive:
    if not location.startswith("s3://"):
        path = Path(location)
        return Archive(str(path if path.is_absolute() else root / path))  # partial dumps in <archive>/.partial
    from tenantctl.aws.session import client, target_for

    moto_url = None
    if model.settings.target == "local":
        from tenantctl.local.moto import ensure_moto

        moto_url = ensure_moto(root / deploy.STATE_DIR).url
    return Archive(location, client(target_for(model.settings, moto_url), "s3"), staging=root / PARTIAL_DUMPS)


# --- IAM: destroy the tenant's stack, the guard opened for that stack only --------------------------

def destroy_tenant_stack(root: Path, model: Model, tenant: Tenant) -> int:
    """Destroy ``tenants/<name>`` (IAM user, role, policy); return the number of resources deleted."""
    from tenantctl.terraform.environment import terraform_environment
    from tenantctl.terraform.manifest import AppliedManifest
    from tenantctl.terraform.pipeline import CLUSTER_VARIABLES
    from tenantctl.terraform.plan_json import read_plan
    from tenantctl.terraform.runner import TerraformRunner
    from tenantctl.terraform.workspace import Workspace, read_stack_files, tenant_stack

    workspace = Workspace.at(root)
    stack = tenant_stack(tenant.name)
    applied = AppliedManifest(workspace.applied_manifest)
    work_dir = workspace.work_dir(stack)
    if applied.get(stack) is None and stack not in workspace.local_state_stacks():
        return 0  # never applied, or already destroyed
    environment = terraform_environment(model, workspace)
    runner = TerraformRunner(environment.toolchain, work_dir, env=environment.env())
    if not (work_dir / ".terraform").is_dir():
        runner.init(environment.backend_config(workspace, stack))
    files = read_stack_files(work_dir)
    cluster_values = (applied.cluster_outputs() or {}).get(tenant.cluster) or {}
    inputs = {var: cluster_values[key] for var, key in CLUSTER_VARIABLES.items() if key in cluster_values}
    inputs = {name: value for name, value in inputs.items()
              if any(f'variable "{name}"'.encode() in data for data in files.values())}
    scratch = work_dir / DESTROY_SCRATCH  # not in /tmp: a rerun after a crash replaces what is left here
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(mode=0o700)
    try:
        var_file = scratch / "inputs.tfvars.json"
        var_file.write_text(json.dumps(inputs))
        plan_file = scratch / "destroy.tfplan"
        outcome = runner.plan(plan_file, var_files=[var_file] if inputs else [], destroy=True)
        summary = read_plan(runner.show_json(plan_file))
        policy = guard.GuardPolicy(allow=frozenset({stack}))
        violations = guard.check_changes(stack, summary.changes, policy)
        unexpected = [c for c in summary.changes if c.action != "delete"]
        if violations or unexpected:
            raise RefusedError(f"destroying {stack} would do more than delete its resources: "
                               + "; ".join([str(v) for v in violations] + [c.address for c in unexpected]))
        if outcome.has_changes:
            runner.apply(plan_file)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    applied.forget(stack)
    return len(summary.changes)


# --- offboard ---------------------------------------------------------------------------------------

@dataclass
class OffboardResult:
    tenant: str
    run_id: str
    resumed: bool
    dumps: list[dict[str, Any]] = field(default_factory=list)
    archived_databases: dict[str, str] = field(default_factory=dict)
    iam_resources_deleted: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "run": self.run_id, "resumed": self.resumed, "dumps": self.dumps,
                "archived_databases": self.archived_databases, "iam_resources_deleted": self.iam_resources_deleted}


def _block_of(model: Model, tenant: Tenant) -> TenantBlock:
    # The resolved cluster is pinned, so a restore lands where the data is.
    tier = None if tenant.tier == model.settings.default_tier else tenant.tier
    return TenantBlock(name=tenant.name, databases=tenant.databases, allowed_ips=tenant.allowed_ips,
                       rds_iam_auth=tenant.rds_iam_auth, tier=tier, cluster=tenant.cluster)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise InputError(f"{path}: clients file not found") from None


def _tenant_model(clients_file: Path, text: str, block: TenantBlock) -> tuple[str, Model, Tenant]:
    """The file's text and model with the tenant in it: as is, or with the ledger's block added back."""
    model = model_from_text(text, str(clients_file))
    found = next((t for t in model.tenants if t.name == block.name), None)
    if found is None:
        text = add_tenant(text, str(clients_file), block)
        model = model_from_text(text, str(clients_file))
        found = next(t for t in model.tenants if t.name == block.name)
    return text, model, found


def offboard(root: Path, clients_file: Path, name: str, *, archive_location: str | None = None,
             retain_days: int = DEFAULT_RETAIN_DAYS, progress: Progress = _quiet,
             now: datetime | None = None) -> OffboardResult:
    """Offboard ``name`` (or resume its interrupted offboarding)."""
    ledger = Ledger(root / LEDGER_FILE)
    text = _read(clients_file)
    model = model_from_text(text, str(clients_file))
    tenant = next((t for t in model.tenants if t.name == name), None)
    previous = latest_run(ledger, name)
    resumed = previous is not None and previous.state == "offboarding"
    if tenant is None and not resumed:
        raise InputError(f"{clients_file}: no tenant named {name!r}",
                         hint="`tenantctl status` lists the tenants")
    if resumed:
        assert previous is not None
        run = previous
        progress(f"resuming offboarding {run.run_id} of {name}")
    else:
        assert tenant is not None
        if retain_days < 0:
            raise InputError("--retain-days must be 0 or more")
        moment = now or datetime.now(UTC)
        stamp = moment.strftime("%Y%m%d")
        state = desired_tenant(model, tenant)
        databases = {db.name: naming.archived_database(db.name, stamp) for db in state.databases}
        too_long = [n for n in databases.values() if len(n.encode()) > MAX_IDENTIFIER]
        if too_long:
            raise InputError(f"archived database name(s) longer than {MAX_IDENTIFIER} bytes: {', '.join(too_long)}")
        location = archive_location or default_archive(model)
        run_id = moment.strftime("%Y%m%dT%H%M%SZ")
        entry = ledger.record(name, STARTED, run=run_id, block=_block_of(model, tenant).as_dict() | {
            "databases": list(tenant.databases)}, cluster=tenant.cluster, login_role=state.login_role.name,
            owner_role=state.owner_role.name, databases=databases, archive=location, retain_days=retain_days)
        run = Run(name, run_id, entry, (entry,))
    result = OffboardResult(name, run.run_id, resumed, archived_databases=run.databases)
    details = run.started.details
    text_with, model, tenant = _tenant_model(clients_file, text, run.block)
    without = model_from_text(remove_tenant(text_with, str(clients_file), name), str(clients_file))
    admin = cluster_admin(root, model, tenant.cluster)

    def step(step_name: str, **details_: Any) -> None:
        ledger.record(name, step_name, run=run.run_id, **details_)

    if not run.done(ROUTING_REVOKED):
        progress("removing the routing entry")
        routes, serial = deploy.write_routes(root, without)
        step(ROUTING_REVOKED, routes=str(routes.relative_to(root) if routes.is_relative_to(root) else routes),
             serial=serial)
    if not run.done(LOGIN_DISABLED):
        progress(f"disabling login of {details['login_role']}")
        if admin.role_exists(details["login_role"]):
            admin.set_login(details["login_role"], False)
        step(LOGIN_DISABLED, role=details["login_role"])
    if not run.done(IAM_REMOVED):
        progress(f"destroying the IAM resources of {name} (stack tenants/{name})")
        result.iam_resources_deleted = destroy_tenant_stack(root, model, tenant)
        step(IAM_REMOVED, stack=f"tenants/{name}", deleted=result.iam_resources_deleted)
    archive = open_archive(root, model, details["archive"])
    for database, archived in sorted(run.databases.items()):
        dumped = run.done(DUMPED, database=database)
        if dumped is None:
            if not admin.database_exists(database):
                raise TenantctlError(f"database {database} of {name} is missing and was not dumped: "
                                     "refusing to continue the offboarding")
            progress(f"dumping {database}")
            dump = archive.dump(admin.dump_source(), database, f"{name}/{run.run_id}/{database}.dump")
            step(DUMPED, **dump.to_json())
            result.dumps.append(dump.to_json())
        else:
            result.dumps.append({k: dumped.details[k] for k in ("database", "location", "sha256", "size")})
        if not run.done(RENAMED, database=database):
            if admin.database_exists(database):
                progress(f"renaming {database} to {archived}")
                admin.rename_database(database, archived, Marker(tenant=name, archived=run.run_id))
            elif not admin.database_exists(archived):
                raise TenantctlError(f"neither {database} nor {archived} exists on cluster {tenant.cluster}")
            step(RENAMED, database=database, archived=archived)
    archive.discard_partials(f"{name}/{run.run_id}")  # every database is dumped: drop what a crash left
    if not run.done(FILE_UPDATED):
        current = _read(clients_file)
        if any(t.name == name for t in model_from_text(current, str(clients_file)).tenants):
            progress(f"removing {name} from {clients_file}")
            updated = remove_tenant(current, str(clients_file), name)
            model_from_text(updated, str(clients_file))
            atomic_write_text(clients_file, updated)
        # Its IAM resources are destroyed: the rendered stack goes too, so `render --check` stays clean.
        remove_stack(root / "stacks", f"tenants/{name}")
        step(FILE_UPDATED, file=str(clients_file))
    if not run.done(COMPLETED):
        step(COMPLETED, retain_days=details["retain_days"])
    return result


# --- restore ----------------------------------------------------------------------------------------

@dataclass
class RestoreResult:
    tenant: str
    run_id: str
    from_dumps: list[str] = field(default_factory=list)
    renamed_back: list[str] = field(default_factory=list)
    deploy: deploy.DeployResult | None = None

    def to_json(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "run": self.run_id, "renamed_back": self.renamed_back,
                "restored_from_dumps": self.from_dumps,
                "routes_serial": self.deploy.routes_serial if self.deploy else None}


def restore(root: Path, clients_file: Path, name: str, *, progress: Progress = _quiet,
            converge_progress: Any = None) -> RestoreResult:
    """Bring back an offboarded (or purged) tenant: databases, block, login, IAM, routing entry."""
    ledger = Ledger(root / LEDGER_FILE)
    run = latest_run(ledger, name)
    if run is None or run.state not in ("offboarded", "purged", "restoring"):
        state = "never offboarded" if run is None else run.state
        raise InputError(f"tenant {name!r} cannot be restored: {state}",
                         hint="an interrupted offboarding is resumed by rerunning `tenantctl offboard`")
    details = run.started.details
    text = _read(clients_file)
    _, model, tenant = _tenant_model(clients_file, text, run.block)
    admin = cluster_admin(root, model, tenant.cluster)

    def step(step_name: str, **details_: Any) -> None:
        ledger.record(name, step_name, run=run.run_id, **details_)

    if RESTORE_STARTED not in run.steps:
        step(RESTORE_STARTED)
    result = RestoreResult(name, run.run_id)
    archive: Archive | None = None
    for database, archived in sorted(run.databases.items()):
        if run.done(RESTORED_DATABASE, database=database):
            continue
        if admin.database_exists(database):
            pass  # already back (a rerun after a crash between rename and ledger)
        elif admin.database_exists(archived):
            progress(f"renaming {archived} back to {database}")
            admin.rename_database(archived, database, Marker(tenant=name))
            result.renamed_back.append(database)
        else:
            dumped = run.done(DUMPED, database=database)
            if dumped is None:
                raise TenantctlError(f"{database}: no archived database and no dump in the ledger")
            archive = archive or open_archive(root, model, details["archive"])
            dump = ArchivedDump(database, dumped.details["location"], dumped.details["sha256"],
                                dumped.details["size"])
            progress(f"restoring {database} from {dump.location}")
            with tempfile.TemporaryDirectory(prefix="tenantctl-restore-") as tmp:
                local = archive.fetch(dump, Path(tmp))
                admin.create_database(database, details["owner_role"])
                restore_dump(admin.dump_source(), local, database)
            result.from_dumps.append(database)
        step(RESTORED_DATABASE, database=database)
    current = _read(clients_file)
    if not any(t.name == name for t in model_from_text(current, str(clients_file)).tenants):
        progress(f"adding {name} back to {clients_file}")
        updated = add_tenant(current, str(clients_file), run.block)
        model = model_from_text(updated, str(clients_file))
        atomic_write_text(clients_file, updated)
        step(RESTORE_FILE_UPDATED, file=str(clients_file))
    else:
        model = model_from_text(current, str(clients_file))
    if admin.role_exists(details["login_role"]):
        admin.set_login(details["login_role"], True)
        step(LOGIN_ENABLED, role=details["login_role"])
    progress("converging (IAM, Postgres, routing map)")
    result.deploy = deploy.converge(root, model, progress=converge_progress)
    if result.deploy.failed:
        raise TenantctlError(f"restoring {name}: the apply failed; rerun `tenantctl restore {name}`")
    step(RESTORE_COMPLETED, routes_serial=result.deploy.routes_serial)
    return result


# --- purge ------------------------------------------------------------------------------------------

@dataclass
class PurgeOutcome:
    tenant: str
    run_id: str
    purged: list[str] = field(default_factory=list)
    skipped: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "run": self.run_id, "purged": self.purged, "skipped": self.skipped}


def routed_databases(root: Path) -> frozenset[tuple[str, str]]:
    """(cluster, physical database) of every entry in the routing map on disk (none if there is no map)."""
    from tenantctl.routing import read_map

    path = root / deploy.ROUTES_FILE
    if not path.exists():
        return frozenset()
    routing_map = read_map(path)
    return frozenset((route.cluster, physical) for route in routing_map.tenants.values()
                     for physical in route.databases.values())


def _check_archive_identity(admin: ClusterAdmin, run: Run, archived: str,
                            routed: frozenset[tuple[str, str]]) -> None:
    """Refuse to drop ``archived`` unless marker, owner and ledger all say it is this run's archive."""
    cluster = run.started.details["cluster"]
    where = f"{archived} on cluster {cluster}"
    if (cluster, archived) in routed:
        raise RefusedError(f"{where} is in the routing map (a live tenant uses it): not dropped")
    identity = admin.database_identity(archived)
    if identity is None:
        raise RefusedError(f"{where} does not exist; the ledger says it is the archive of {run.tenant}",
                           hint="if it was dropped by hand, nothing is left to purge; check before going on")
    owner, marker = identity
    expected_owner = run.started.details.get("owner_role")
    problems = []
    if marker is None or marker.tenant != run.tenant:
        problems.append(f"its marker names {'no tenant' if marker is None else repr(marker.tenant)}")
    elif marker.archived not in (None, run.run_id):  # None: archived before markers named their run
        problems.append(f"its marker names offboarding run {marker.archived}, not {run.run_id}")
    if expected_owner is not None and owner != expected_owner:
        problems.append(f"it is owned by {owner}, not {expected_owner}")
    if problems:
        raise RefusedError(f"{where} is not provably the archive of offboarded tenant {run.tenant!r} "
                           f"(run {run.run_id}): {'; '.join(problems)}. Nothing was dropped",
                           hint="inspect it with psql; an archive that was taken over must be resolved by hand")


def _age_days(at: str, now: datetime) -> float:
    moment = datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return (now - moment).total_seconds() / 86400


def purge(root: Path, clients_file: Path, *, older_than_days: float, progress: Progress = _quiet,
          now: datetime | None = None, dry_run: bool = False) -> list[PurgeOutcome]:
    """Drop archived databases of tenants offboarded more than ``older_than_days`` ago and past their
    retention, each only after its dump's checksum was verified again."""
    if older_than_days < 0:
        raise InputError("--older-than must be 0 or more")
    ledger = Ledger(root / LEDGER_FILE)
    moment = now or datetime.now(UTC)
    model: Model | None = None
    outcomes: list[PurgeOutcome] = []
    for run in runs(ledger):
        if run.state != "offboarded":
            continue
        completed = run.done(COMPLETED)
        assert completed is not None
        outcome = PurgeOutcome(run.tenant, run.run_id)
        outcomes.append(outcome)
        age = _age_days(completed.at, moment)
        retain = float(run.started.details.get("retain_days", DEFAULT_RETAIN_DAYS))
        if age < older_than_days or age < retain:
            outcome.skipped = f"offboarded {age:.1f} day(s) ago; retention {retain:g}, --older-than {older_than_days:g}"
            continue
        if dry_run:
            outcome.skipped = "dry run"
            continue
        model = model or model_from_text(_read(clients_file), str(clients_file))
        if not any(c.name == run.started.details["cluster"] for c in model.clusters):
            outcome.skipped = f"cluster {run.started.details['cluster']} is no longer in {clients_file}"
            continue
        admin = cluster_admin(root, model, run.started.details["cluster"])
        archive = open_archive(root, model, run.started.details["archive"])
        for database, archived in sorted(run.databases.items()):
            if run.done(PURGED_DATABASE, database=database):
                continue
            dumped = run.done(DUMPED, database=database)
            if dumped is None:
                raise TenantctlError(f"{archived}: no dump recorded in the ledger; refusing to drop it")
            _check_archive_identity(admin, run, archived, routed_databases(root))
            progress(f"verifying the dump of {database}")
            archive.verify(ArchivedDump(database, dumped.details["location"], dumped.details["sha256"],
                                        dumped.details["size"]))
            progress(f"dropping {archived}")
            admin.drop_database(archived)
            ledger.record(run.tenant, PURGED_DATABASE, run=run.run_id, database=database, archived=archived,
                          sha256=dumped.details["sha256"])
            outcome.purged.append(archived)
        ledger.record(run.tenant, PURGED, run=run.run_id)
    return outcomes
