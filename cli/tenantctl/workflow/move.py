"""Move a live tenant to another cluster behind the proxy: copy, catch up, cut over, archive the source.

Phases (each step recorded in ``.tenantctl/moves.jsonl`` before the next one starts)::

    prepare    the native engine creates the tenant's roles, databases and grants on the target;
               each database's schema is copied (pg_dump --schema-only)
    copy       a publication per database on the source, a subscription on the target (initial copy,
               then streaming); wait until every table is copied
    cut-over   the proxy pauses the tenant's new connections (queued, not refused); open transactions
               on the source get up to --timeout to end; the tenant's login is disabled on the source
               and its remaining sessions are ended (they get 57P01, "terminating connection due to
               administrator command"); replication catches up (row counts and hash sums of every
               table equal on both sides); sequences are copied; the routing map switches the tenant;
               the proxy reloads it and resumes: queued connections go to the target
    finish     subscriptions, publications, slots and the replication role removed; the source
               databases renamed to archive names (kept, marked); the clients file pins the tenant to
               the target

Any failure or timeout before the map switches aborts the cut-over: login re-enabled on the source,
the tenant resumed there, the map unchanged, exit 3. A rerun of the same command after a crash (even
SIGKILL) reads the ledger: before the switch it undoes a half-done cut-over and retries; after it, it
finishes. Nothing here drops a tenant database.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tenantctl.errors import InputError, RefusedError, TenantctlError
from tenantctl.failpoint import failpoint
from tenantctl.fsutil import atomic_write_text
from tenantctl.model import model_from_text, naming
from tenantctl.model.desired import desired_state
from tenantctl.model.edit import set_tenant_cluster
from tenantctl.model.types import Model
from tenantctl.postgres.catalog import Marker
from tenantctl.postgres.connect import ClusterConnection
from tenantctl.routing.store import read_previous
from tenantctl.workflow import deploy
from tenantctl.workflow import move_sql as db
from tenantctl.workflow.clusters import cluster_resolver
from tenantctl.workflow.ledger import Entry, Ledger

LEDGER_FILE = deploy.STATE_DIR / "moves.jsonl"
NAME_PREFIX = "tenantctl_move_"

STARTED = "move_started"
PREPARED = "target_prepared"
SUBSCRIBED = "database_subscribed"
COPIED = "initial_copy_done"
CUTOVER_STARTED = "cutover_started"
CUTOVER_ABORTED = "cutover_aborted"
SWITCHED = "routing_switched"
RESUMED = "tenant_resumed"
CLEANED = "replication_removed"
DUMPED = "source_database_dumped"
ARCHIVED = "source_database_archived"
FILE_UPDATED = "clients_file_updated"
COMPLETED = "move_completed"

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


class Proxy:
    """The proxies serving the tenant, through their control sockets (pause, reload, resume)."""

    def __init__(self, sockets: tuple[Path, ...]) -> None:
        self.sockets = sockets

    def _each(self, document: dict[str, Any]) -> list[dict[str, Any]]:
        from tenantctl.proxy.control import request

        return [request(path, document) for path in self.sockets]

    def pause(self, tenant: str, max_seconds: float, reason: str) -> None:
        self._each({"op": "pause", "tenant": tenant, "max_seconds": max_seconds, "reason": reason})

    def reload(self, serial: int) -> None:
        for answer in self._each({"op": "reload"}):
            if int(answer.get("serial", 0)) < serial:
                raise TenantctlError(f"a proxy still serves routing map serial {answer.get('serial')} "
                                     f"after a reload, not {serial}")

    def resume(self, tenant: str) -> None:
        self._each({"op": "resume", "tenant": tenant})


@dataclass
class MoveOptions:
    timeout: float = 10.0  # drain + catch-up during the cut-over, seconds
    verify: str = "full"  # "full": row counts and row hashes; "counts": row counts only (faster pause)
    dump_to: str | None = None  # also dump each source database (pg_dump -Fc, sha256) here before archiving it
    copy_timeout: float = 3600.0  # the initial copy
    proxy_sockets: tuple[Path, ...] = ()
    plan_only: bool = False


@dataclass
class MoveResult:
    tenant: str
    run_id: str
    source: str
    target: str
    resumed_run: bool = False
    steps: list[str] = field(default_factory=list)
    pause_seconds: float | None = None
    cutover_timings: dict[str, float] = field(default_factory=dict)
    verified: list[dict[str, Any]] = field(default_factory=list)
    archived: dict[str, str] = field(default_factory=dict)
    dumps: list[dict[str, Any]] = field(default_factory=list)
    plan_only: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "run": self.run_id, "source": self.source, "target": self.target,
                "resumed": self.resumed_run, "steps": self.steps, "pause_seconds": self.pause_seconds,
                "cutover_timings": self.cutover_timings,
                "verified": self.verified, "archived": self.archived, "dumps": self.dumps, "plan_only": self.plan_only}


@dataclass(frozen=True)
class Run:
    tenant: str
    run_id: str
    started: Entry
    entries: tuple[Entry, ...]

    def done(self, step: str, **match: Any) -> Entry | None:
        for entry in reversed(self.entries):
            if entry.step == step and all(entry.details.get(k) == v for k, v in match.items()):
                return entry
        return None

    @property
    def finished(self) -> bool:
        return self.done(COMPLETED) is not None

    @property
    def cutover_open(self) -> bool:
        """A cut-over began and neither switched nor was aborted (a crash in the middle of it)."""
        steps = [e.step for e in self.entries if e.step in (CUTOVER_STARTED, CUTOVER_ABORTED, SWITCHED)]
        return bool(steps) and steps[-1] == CUTOVER_STARTED

    @property
    def source(self) -> str:
        return str(self.started.details["source"])

    @property
    def target(self) -> str:
        return str(self.started.details["target"])

    @property
    def databases(self) -> list[str]:
        return list(self.started.details["databases"])

    @property
    def name(self) -> str:
        return str(self.started.details["name"])


def runs(ledger: Ledger, tenant: str) -> list[Run]:
    found: dict[str, list[Entry]] = {}
    for entry in ledger.entries(tenant):
        run_id = entry.details.get("run")
        if isinstance(run_id, str):
            found.setdefault(run_id, []).append(entry)
    result = []
    for run_id, entries in found.items():
        started = next((e for e in entries if e.step == STARTED), None)
        if started is not None:
            result.append(Run(tenant, run_id, started, tuple(entries)))
    return sorted(result, key=lambda r: (r.started.at, r.run_id))


def in_motion(root: Path) -> dict[str, Run]:
    """Tenants with an unfinished move, and that move."""
    ledger = Ledger(root / LEDGER_FILE)
    tenants = {entry.tenant for entry in ledger.entries() if entry.step == STARTED}
    found = {}
    for tenant in sorted(tenants):
        unfinished = [r for r in runs(ledger, tenant) if not r.finished]
        if unfinished:
            found[tenant] = unfinished[-1]
    return found


def phase(run: Run) -> str:
    """Where an unfinished move stands, in the words of the phases."""
    if run.cutover_open:
        return "cutting over"
    if run.done(SWITCHED) is not None:
        return "finishing (routed to the target)"
    if run.done(COPIED):
        return "copied, cut-over pending" + (" (last one aborted)" if run.done(CUTOVER_ABORTED) else "")
    if run.done(PREPARED):
        return "copying"
    return "preparing"


def as_routed(root: Path, model: Model) -> Model:
    """``model`` with each tenant whose unfinished move already switched the map placed on its target:
    where its connections go, and where `verify` must find it."""
    for tenant, run in in_motion(root).items():
        switched = run.done(SWITCHED) is not None or routed_cluster(root, tenant, model) == run.target
        if switched and any(t.name == tenant for t in model.tenants):
            model = _moved(model, tenant, run.target)
    return model


def _moved(model: Model, tenant: str, cluster: str) -> Model:
    tenants = tuple(replace(t, cluster=cluster, cluster_pinned=True) if t.name == tenant else t
                    for t in model.tenants)
    return replace(model, tenants=tenants)


def routed_cluster(root: Path, tenant: str, model: Model) -> str | None:
    current = read_previous(root / deploy.ROUTES_FILE)
    if current is None:
        return None
    login = naming.login_role(model.settings, tenant)
    route = current.tenants.get(login)
    return route.cluster if route is not None else None


def plan_steps(tenant: str, source: str, target: str, databases: list[str]) -> list[str]:
    """What the move will do, for --plan-only and the progress lines (pure)."""
    return [
        f"prepare: create {tenant}'s roles, databases ({', '.join(databases)}) and grants on {target}; "
        "copy each database's schema",
        f"copy: publish each database on {source}, subscribe on {target} (initial copy, then streaming)",
        f"cut-over: pause {tenant} at the proxy, wait for open transactions, disable its login on {source}, "
        "catch up and verify row counts and hashes, copy sequences, switch the routing map, resume",
        f"finish: remove the replication objects, rename the databases on {source} to archive names "
        f"(kept), pin {tenant} to {target} in the clients file",
    ]


def rollback_target(root: Path, name: str) -> str:
    """Where ``--rollback`` takes ``name``: back to the source of its last finished move, by moving it
    again (a fresh copy replicated from where it is now; the old source's archive stays as it is)."""
    finished = [r for r in runs(Ledger(root / LEDGER_FILE), name) if r.finished]
    if not finished:
        raise InputError(f"{name} has no finished move to roll back", hint="`tenantctl status` shows moves")
    return finished[-1].source


LOCK_FILE = deploy.STATE_DIR / "move.lock"


@contextmanager
def _one_move_at_a_time(root: Path, plan_only: bool) -> Iterator[None]:
    """Two moves of a project at once would interleave their ledgers, cut-overs and routing-map writes."""
    if plan_only:
        yield
        return
    path = root / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise RefusedError(f"another tenantctl move is running in this project (pid {holder})",
                               hint="wait for it; after a crash the lock is released and a rerun resumes") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock (a SIGKILLed process releases it too)


def move(root: Path, clients_file: Path, name: str, target: str, *, options: MoveOptions | None = None,
         progress: Progress = _quiet, now: datetime | None = None) -> MoveResult:
    options = options or MoveOptions()
    with _one_move_at_a_time(root, options.plan_only):
        return _move(root, clients_file, name, target, options=options, progress=progress, now=now)


def _move(root: Path, clients_file: Path, name: str, target: str, *, options: MoveOptions,
          progress: Progress, now: datetime | None) -> MoveResult:
    ledger = Ledger(root / LEDGER_FILE)
    text = _read(clients_file)
    model = model_from_text(text, str(clients_file))
    tenant = next((t for t in model.tenants if t.name == name), None)
    if tenant is None:
        raise InputError(f"{clients_file}: no tenant named {name!r}", hint="`tenantctl status` lists the tenants")
    previous = [r for r in runs(ledger, name) if not r.finished]
    if previous:
        run = previous[-1]
        if run.target != target:
            raise RefusedError(f"a move of {name} to {run.target} (run {run.run_id}) is unfinished",
                               hint=f"finish it first: tenantctl move {name} --to {run.target}")
        progress(f"resuming move {run.run_id} of {name} ({run.source} -> {run.target})")
    else:
        if target not in {c.name for c in model.clusters}:
            raise InputError(f"{clients_file}: no cluster named {target!r}",
                             hint="clusters: " + ", ".join(c.name for c in model.clusters))
        source = routed_cluster(root, name, model) or tenant.cluster
        if source == target:
            raise InputError(f"{name} is already on {target}")
        if tenant.cluster != source:
            raise RefusedError(f"{clients_file} places {name} on {tenant.cluster!r} but it is routed to "
                               f"{source!r}", hint=f"set cluster = \"{source}\" for {name}, then move it")
        _check_room(model, name, target)
        databases = [d.name for d in desired_state(model).tenant(name).databases]
        moment = now or datetime.now(UTC)
        stamp = moment.strftime("%Y%m%dt%H%M%Sz")
        archives = {d: naming.moved_database(d, stamp) for d in databases}
        too_long = [n for n in archives.values() if len(n.encode()) > 63]
        if too_long:
            raise InputError(f"archive name(s) longer than 63 bytes: {', '.join(too_long)}")
        if options.plan_only:
            return MoveResult(name, "", source, target, steps=plan_steps(name, source, target, databases),
                              plan_only=True)
        if not options.proxy_sockets:
            raise InputError("a move needs the proxy's control socket (--proxy-socket PATH, once per proxy) to "
                             "pause the tenant during the cut-over")
        run_id = moment.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
        entry = ledger.record(name, STARTED, run=run_id, source=source, target=target, databases=databases,
                              archives=archives, dump_to=options.dump_to,
                              name=NAME_PREFIX + run_id.lower().replace("-", "_"), login_role=tenant_login(model, name))
        run = Run(name, run_id, entry, (entry,))
    if not options.proxy_sockets and not run.done(RESUMED):
        raise InputError("a move needs the proxy's control socket (--proxy-socket PATH)")
    return _Mover(root, clients_file, model, run, ledger, options, progress).run()


def tenant_login(model: Model, tenant: str) -> str:
    return naming.login_role(model.settings, tenant)


def _check_room(model: Model, tenant: str, target: str) -> None:
    cluster = next(c for c in model.clusters if c.name == target)
    others = [t.name for t in model.tenants if t.cluster == target and t.name != tenant]
    if cluster.dedicated and others:
        raise RefusedError(f"cluster {target} is dedicated and already holds {others[0]}")
    if cluster.max_tenants is not None and len(others) >= cluster.max_tenants:
        raise RefusedError(f"cluster {target} is full ({cluster.max_tenants} tenants)")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise InputError(f"{path}: clients file not found") from None


class _Mover:
    def __init__(self, root: Path, clients_file: Path, model: Model, run: Run, ledger: Ledger,
                 options: MoveOptions, progress: Progress) -> None:
        self.root, self.clients_file, self.model, self.run_ = root, clients_file, model, run
        self.ledger, self.options, self.progress = ledger, options, progress
        self.tenant = run.tenant
        self.login = str(run.started.details["login_role"])
        self.moved = _moved(model, self.tenant, run.target)
        resolver = cluster_resolver(model, root / deploy.STATE_DIR)
        self.source: ClusterConnection = resolver.resolve(run.source)
        self.target: ClusterConnection = resolver.resolve(run.target)
        self.proxy = Proxy(options.proxy_sockets)
        self.result = MoveResult(self.tenant, run.run_id, run.source, run.target, resumed_run=len(run.entries) > 1)

    def step(self, step: str, **details: Any) -> None:
        entry = self.ledger.record(self.tenant, step, run=self.run_.run_id, **details)
        self.run_ = replace(self.run_, entries=(*self.run_.entries, entry))
        self.result.steps.append(step)

    def run(self) -> MoveResult:
        run = self.run_
        if not run.done(CLEANED):
            for cluster, connection in ((run.source, self.source), (run.target, self.target)):
                if db.wal_level(connection) != "logical":
                    raise InputError(
                        f"cluster {cluster} does not run with wal_level = logical: a move replicates logically",
                        hint=("restart the local servers: `tenantctl local down && tenantctl local up`"
                              if self.model.settings.target == "local" else
                              "the cluster stack sets rds.logical_replication = 1; apply it and reboot the writer"))
        if run.cutover_open:
            if routed_cluster(self.root, self.tenant, self.model) == run.target:
                self.step(SWITCHED, recovered=True)  # the map was written before the crash
            else:
                self._abort("the previous run stopped during the cut-over")
        if not self.run_.done(PREPARED):
            self._prepare()
        for database in run.databases:
            if not self.run_.done(SUBSCRIBED, database=database) or not self.run_.done(COPIED):
                self._subscribe(database)
        if not self.run_.done(COPIED):
            self._wait_copied()
        if not self.run_.done(SWITCHED):
            self._cut_over()
        if not self.run_.done(RESUMED):
            self.proxy.resume(self.tenant)
            self.step(RESUMED, recovered=True)
        if not self.run_.done(CLEANED):
            self._clean()
        failpoint("move-finishing")
        self._archive_sources()
        if not self.run_.done(FILE_UPDATED):
            self._pin()
        if not self.run_.done(COMPLETED):
            self.step(COMPLETED)
        return self.result

    # --- prepare / copy ---------------------------------------------------------------------------

    def _prepare(self) -> None:
        from tenantctl.postgres.applier import execute
        from tenantctl.postgres.engine import plan_cluster

        self.progress(f"prepare: roles, databases and grants of {self.tenant} on {self.run_.target}")
        desired = desired_state(self.moved)
        secrets_store = deploy._secret_store(self.moved, self.root / deploy.STATE_DIR)
        plan = plan_cluster(desired, self.run_.target, self.target, secrets=secrets_store)
        actions = [a for a in plan.actions if a.tenant == self.tenant]
        execute(actions, self.target, secrets=secrets_store)
        for database in self.run_.databases:
            if db.user_tables(self.target, database) == 0 and db.user_tables(self.source, database) > 0:
                self.progress(f"prepare: copying the schema of {database}")
                db.copy_schema(self.source, self.target, database)
        failpoint("move-prepared")
        self.step(PREPARED, actions=len(actions))

    def _subscribe(self, database: str) -> None:
        name = self.run_.name
        if not hasattr(self, "_password"):
            self._password = db.ensure_replication_role(self.source, name)
        self.progress(f"copy: replicating {database} from {self.run_.source} to {self.run_.target} (creating the "
                      "replication slot waits for transactions open on the source to end)")
        full = db.ensure_publication(self.source, database, name)
        if full:
            self.progress(f"copy: {', '.join(full)} without a primary key: REPLICA IDENTITY FULL")
        db.ensure_subscription(self.target, database, _sub(name, database), name, source=self.source, role=name,
                               password=self._password)
        if not self.run_.done(SUBSCRIBED, database=database):
            self.step(SUBSCRIBED, database=database)

    def _wait_copied(self) -> None:
        deadline = time.monotonic() + self.options.copy_timeout
        started = time.monotonic()
        pending = list(self.run_.databases)
        while pending:
            pending = [d for d in pending if not db.subscription_synced(self.target, d, _sub(self.run_.name, d))]
            if not pending:
                break
            if time.monotonic() > deadline:
                raise TenantctlError(f"the initial copy of {', '.join(pending)} did not finish within "
                                     f"{self.options.copy_timeout:.0f}s; the move can be resumed by running it again")
            time.sleep(0.2)
        failpoint("move-copied")
        self.step(COPIED, seconds=round(time.monotonic() - started, 3))

    # --- cut-over ---------------------------------------------------------------------------------

    def _cut_over(self) -> None:
        timeout = self.options.timeout
        self.progress(f"cut-over: pausing {self.tenant} (at most {timeout:.1f}s)")
        self.step(CUTOVER_STARTED, timeout=timeout)
        sessions = db.Sessions()
        timings: dict[str, float] = {}
        try:
            source = sessions.get(self.source)
            source_dbs = {d: sessions.get(self.source, d) for d in self.run_.databases}
            target_dbs = {d: sessions.get(self.target, d) for d in self.run_.databases}
            clock = _Clock()
            self.proxy.pause(self.tenant, timeout + 5, f"move to {self.run_.target}")
            paused_at = time.monotonic()
            deadline = paused_at + timeout
            timings["pause"] = clock.lap()
            while db.open_transactions(source, self.login) > 0:
                if time.monotonic() > deadline:
                    raise _Abort(f"{self.tenant} still had open transactions on {self.run_.source} after "
                                 f"{timeout:.1f}s")
                time.sleep(0.005)
            timings["drain"] = clock.lap()
            db.set_login(source, self.login, False)
            ended = db.terminate_sessions(source, self.login)
            timings["fence"] = clock.lap()
            failpoint("move-fenced")
            self.result.verified = self._catch_up(source_dbs, target_dbs, deadline)
            timings["catch_up_and_verify"] = clock.lap()
            for database in self.run_.databases:
                values = db.sequences(source_dbs[database], database)
                db.set_sequences(target_dbs[database], database, values)
                behind = [name for name, value in db.sequences(target_dbs[database], database).items()
                          if (values.get(name) or 0) > (value or 0)]
                if behind:
                    raise _Abort(f"sequence(s) {', '.join(behind)} of {database} behind on the target")
            timings["sequences"] = clock.lap()
            _routes, serial = deploy.write_routes(self.root, self.moved)
            timings["switch"] = clock.lap()
            failpoint("move-switched")
            self.step(SWITCHED, serial=serial, sessions_ended=ended)
        except _Abort as abort:
            self._abort(str(abort))
            raise RefusedError(f"cut-over of {self.tenant} aborted: {abort}; it stays on {self.run_.source} "
                               "(map unchanged, nothing lost)",
                               hint="rerun the move (perhaps with a longer --timeout)") from None
        except TenantctlError as error:
            self._abort(error.message)
            raise
        finally:
            sessions.close()
        self.proxy.reload(serial)
        timings["reload"] = clock.lap()
        self.proxy.resume(self.tenant)
        timings["resume"] = clock.lap()
        self.result.pause_seconds = round(time.monotonic() - paused_at, 6)
        self.result.cutover_timings = {k: round(v, 6) for k, v in timings.items()}
        self.step(RESUMED, pause_seconds=self.result.pause_seconds, timings=self.result.cutover_timings)
        self.progress(f"cut-over: {self.tenant} now on {self.run_.target} (paused {self.result.pause_seconds:.3f}s)")

    def _catch_up(self, source: dict[str, Any], target: dict[str, Any], deadline: float) -> list[dict[str, Any]]:
        """Wait until every table has the same rows on both sides (the source is fenced: no more writes).
        Both sides are hashed at the same time (each scan is CPU-bound, one per side)."""
        from concurrent.futures import ThreadPoolExecutor

        databases = self.run_.databases
        with ThreadPoolExecutor(max_workers=2) as pool:
            hashes = self.options.verify == "full"
            expected_future = pool.submit(lambda: {d: db.table_digests(source[d], d, hashes=hashes) for d in databases})
            observed = {d: db.table_digests(target[d], d, hashes=hashes) for d in databases}
            expected = expected_future.result()
        while True:
            mismatched = [d for d in databases if observed[d] != expected[d]]
            if not mismatched:
                return [{"database": d, "tables": [t.to_json() for t in expected[d]]} for d in databases]
            if time.monotonic() > deadline:
                raise _Abort(f"replication of {', '.join(mismatched)} did not catch up in time "
                             "(row counts or hashes differ)")
            time.sleep(0.005)
            observed.update({d: db.table_digests(target[d], d, hashes=hashes) for d in mismatched})

    def _abort(self, why: str) -> None:
        self.progress(f"cut-over aborted: {why}; resuming {self.tenant} on {self.run_.source}")
        sessions = db.Sessions()
        try:
            db.set_login(sessions.get(self.source), self.login, True)
        finally:
            sessions.close()
        try:
            self.proxy.resume(self.tenant)
        finally:
            self.step(CUTOVER_ABORTED, reason=why)

    # --- finish -----------------------------------------------------------------------------------

    def _clean(self) -> None:
        name = self.run_.name
        self.progress("finish: removing subscriptions, publications, slots and the replication role")
        for database in self.run_.databases:
            db.drop_subscription(self.target, database, _sub(name, database))
            db.drop_publication(self.source, database, name)
        for slot in db.slots(self.source, name):
            db.drop_slot(self.source, slot)
        db.drop_replication_role(self.source, name)
        self.step(CLEANED)

    def _archive_sources(self) -> None:
        from tenantctl.workflow.offboard import ClusterAdmin, open_archive

        admin = ClusterAdmin(self.source)
        archives = dict(self.run_.started.details["archives"])
        dump_to = self.run_.started.details.get("dump_to")
        for database in self.run_.databases:
            if self.run_.done(ARCHIVED, database=database):
                continue
            archived = str(archives[database])
            if dump_to and not self.run_.done(DUMPED, database=database) and db.database_exists(self.source, database):
                self.progress(f"finish: dumping {database} from {self.run_.source} to {dump_to}")
                archive = open_archive(self.root, self.model, str(dump_to))
                name = f"{self.tenant}/move-{self.run_.run_id}/{database}.dump"
                dump = archive.dump(admin.dump_source(), database, name)
                self.step(DUMPED, **dump.to_json())
                self.result.dumps.append(dump.to_json())
            if db.database_exists(self.source, database):
                self.progress(f"finish: renaming {database} on {self.run_.source} to {archived}")
                admin.rename_database(database, archived, Marker(tenant=self.tenant, archived=self.run_.run_id))
            self.step(ARCHIVED, database=database, archived=archived, cluster=self.run_.source)
            self.result.archived[database] = archived

    def _pin(self) -> None:
        current = _read(self.clients_file)
        updated = set_tenant_cluster(current, str(self.clients_file), self.tenant, self.run_.target)
        model_from_text(updated, str(self.clients_file))
        if updated != current:
            atomic_write_text(self.clients_file, updated)
        self.step(FILE_UPDATED, file=str(self.clients_file))


class _Abort(Exception):
    pass


class _Clock:
    def __init__(self) -> None:
        self._last = time.monotonic()

    def lap(self) -> float:
        now = time.monotonic()
        elapsed, self._last = now - self._last, now
        return elapsed


def _sub(name: str, database: str) -> str:
    """The subscription (and slot) of one database: unique per move and database, at most 63 bytes."""
    import hashlib

    return f"{name}_{hashlib.sha256(database.encode()).hexdigest()[:8]}"
