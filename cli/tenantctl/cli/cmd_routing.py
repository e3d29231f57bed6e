"""`tenantctl routes build|show|check|publish` and `tenantctl proxy`."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import typer

from tenantctl.cli.console import OutputFormat, err, out, print_json
from tenantctl.errors import ExitCode, InputError

routes_app = typer.Typer(
    name="routes",
    help=(
        "The routing map: which cluster, host and physical database serve each tenant.\n\n"
        "A versioned JSON document (format tenantctl.routing/v1, see cli/tenantctl/routing/SCHEMA.md) "
        "with a serial, a checksum and no secrets; the proxy serves it and reloads it when it changes."
    ),
    no_args_is_help=True,
)

FORMAT_OPTION = typer.Option(OutputFormat.text, "--format", "-f", help="text for people, json for pipelines.")
DEFAULT_MAP = ".tenantctl/routes.json"  # where `tenantctl apply` writes the project's map
MAP_ARGUMENT = typer.Argument(DEFAULT_MAP, help="Map file or s3://BUCKET/KEY (default: the project's map, "
                              "written by `tenantctl apply`).")


def _load_endpoints(path: Path) -> dict[str, object]:
    from tenantctl.routing import endpoints_from_json

    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: endpoints file not found") from None
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: not a JSON endpoints file: {error}") from None
    return dict(endpoints_from_json(document, str(path)))


BUILD_HELP = (
    "Build the routing map from the clients file and the clusters' endpoints.\n\n"
    "The serial increases only when the content changes; rebuilding the same content leaves the file "
    "untouched. Only logical database names (as in the clients file) route; physical names do not."
)
PROXY_HELP = (
    "Run the tenant-routing PostgreSQL proxy.\n\n"
    "Clients connect to one endpoint; the startup `user` picks the tenant, the logical `database` is "
    "rewritten to the physical one and the connection goes to the tenant's cluster. Authentication passes "
    "through (password, md5, SCRAM, IAM tokens). The map reloads when its file (or S3 object) changes or on "
    "SIGHUP; SIGTERM drains: no new connections, sessions get --drain-timeout seconds to finish.\n\n"
    "Refusals: an unknown tenant or database, or an address not allowed, gets a mock SCRAM exchange ending "
    "in 28P01 like a wrong password (no enumeration); 28000 (TLS required: the default once --tls-cert is "
    "given), 53300 (tenant connection limit, too many pending handshakes), 08P01 (malformed or repeated "
    "startup parameters), 08001 (cluster unreachable). Clients see the backend's real pid. Metrics and "
    "health on --admin: /metrics, /healthz.\n\n"
    "Relay: after the handshake the bytes are copied by a native epoll thread (built from C at install "
    "time on Linux) unless a leg uses TLS; `--relay python` keeps every session in the asyncio loop."
)


@routes_app.command("build", help=BUILD_HELP)
def build(
    clients: Path = typer.Option(Path("clients.tfvars"), "--clients", "-c",
                                 help="The clients file (HCL .tfvars or .tfvars.json)."),
    endpoints: Path | None = typer.Option(
        None, "--endpoints", "-e", help='JSON {"cluster": {"host": ..., "port": ..., '
        '"tls"?: {"mode": ..., "ca_file"?: ...}, "reader_host"?: ..., "hostaddr"?: IP}}. '
        "Default: the applied cluster stack's outputs (endpoint names, "
        "verify-full; on the local target through each cluster's local server)."),
    output: Path = typer.Option(Path(".tenantctl/routes.json"), "--out", "-o",
                                help="Where to write the map (atomically). Its serial is continued."),
    publish: str | None = typer.Option(None, "--publish", help="Also upload the map to s3://BUCKET/KEY."),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Build the routing map (help text: BUILD_HELP)."""
    from tenantctl.model import load_model
    from tenantctl.model.desired import desired_state
    from tenantctl.routing import build_routing_map, describe, read_previous, write_map
    from tenantctl.routing.build import Endpoint

    model = load_model(clients)
    if endpoints is None:
        from tenantctl.workflow.deploy import cluster_endpoints

        endpoint_map = cluster_endpoints(Path.cwd(), model)
    else:
        endpoint_map = {name: value for name, value in _load_endpoints(endpoints).items()
                        if isinstance(value, Endpoint)}
    previous = read_previous(output)
    routing_map = build_routing_map(desired_state(model), endpoint_map, now=datetime.now(UTC),
                                    previous=previous)
    written = write_map(output, routing_map)
    published = None
    if publish:
        from tenantctl.routing.s3 import publish_map

        published = publish_map(publish, routing_map)
    summary = {**describe(routing_map), "path": str(output), "written": written,
               "published": publish if published is not None else None}
    if output_format is OutputFormat.json:
        print_json(summary)
        return
    verb = "wrote" if written else "unchanged"
    out.print(f"{verb} {output}: serial {routing_map.serial}, {len(routing_map.tenants)} tenants on "
              f"{len(routing_map.clusters)} clusters, {routing_map.checksum}", markup=False)
    if publish:
        out.print(f"published to {publish}", markup=False)


@routes_app.command("show")
def show(
    location: str = MAP_ARGUMENT,
    tenant: str | None = typer.Option(None, "--tenant", "-t", help="Show one tenant's route (by login role)."),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Show a routing map: summary and routes per tenant (validated on read)."""
    from tenantctl.report.tables import print_table
    from tenantctl.routing import describe, load_map
    from tenantctl.routing.document import to_document

    routing_map = load_map(location)
    if tenant is not None and tenant not in routing_map.tenants:
        raise InputError(f"{location}: no tenant login role {tenant!r} in the routing map")
    if output_format is OutputFormat.json:
        document = to_document(routing_map)
        if tenant is not None:
            document["tenants"] = {tenant: document["tenants"][tenant]}
        print_json(document)
        return
    summary = describe(routing_map)
    out.print(f"{location}: serial {summary['serial']}, generated {summary['generated_at']}, "
              f"{summary['tenants']} tenants", markup=False)
    out.print(f"checksum {summary['checksum']}", markup=False)
    per_cluster = summary["tenants_per_cluster"]
    assert isinstance(per_cluster, dict)
    print_table(out, ("cluster", "host", "port", "tls", "tenants"),
                [(name, cluster.host, str(cluster.port), cluster.tls.mode, str(per_cluster.get(name, 0)))
                 for name, cluster in routing_map.clusters.items()], title="clusters")
    names = [tenant] if tenant else list(routing_map.tenants)
    limit = 200
    rows = []
    for user in names[:limit]:
        route = routing_map.tenants[user]
        databases = ", ".join(f"{logical} -> {physical}" for logical, physical in route.databases.items())
        rows.append((user, route.tenant, route.cluster, databases, ", ".join(route.allowed_cidrs),
                     str(route.max_connections)))
    print_table(out, ("login role", "tenant", "cluster", "databases (logical -> physical)", "allowed CIDRs",
                      "max conn"), rows, title="tenants")
    if len(names) > limit:
        out.print(f"... and {len(names) - limit} more (use --tenant NAME or --format json)", markup=False)


@routes_app.command("check")
def check(
    location: str = MAP_ARGUMENT,
    clients: Path | None = typer.Option(None, "--clients", "-c",
                                        help="Also check the map is current for this clients file..."),
    endpoints: Path | None = typer.Option(None, "--endpoints", "-e", help="...and these endpoints."),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Validate a routing map (schema, checksum); with --clients/--endpoints also check it is current.

    Exit codes: 0 valid (and current), 1 stale (a rebuild would change it), 2 invalid.
    """
    from tenantctl.routing import build_routing_map, describe, load_map
    from tenantctl.routing.build import Endpoint

    routing_map = load_map(location)
    stale: bool | None = None
    if clients is not None or endpoints is not None:
        if clients is None or endpoints is None:
            raise InputError("--clients and --endpoints go together")
        from tenantctl.model import load_model
        from tenantctl.model.desired import desired_state

        endpoint_map = {name: value for name, value in _load_endpoints(endpoints).items()
                        if isinstance(value, Endpoint)}
        rebuilt = build_routing_map(desired_state(load_model(clients)), endpoint_map,
                                    now=datetime.now(UTC), previous=routing_map)
        stale = rebuilt is not routing_map
    result = {**describe(routing_map), "valid": True, "stale": stale}
    if output_format is OutputFormat.json:
        print_json(result)
    else:
        state = "" if stale is None else (", STALE: rebuild with `tenantctl routes build`" if stale
                                          else ", current")
        out.print(f"{location}: valid, serial {routing_map.serial}, {len(routing_map.tenants)} tenants{state}",
                  markup=False)
    if stale:
        raise typer.Exit(ExitCode.FAILURE)


@routes_app.command("publish")
def publish(
    location: str = typer.Argument(..., help="Map file to upload."),
    url: str = typer.Argument(..., help="s3://BUCKET/KEY (endpoint from AWS_ENDPOINT_URL_S3 if set)."),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Upload a validated routing map to S3 for a fleet of proxies (`proxy --routes s3://...`)."""
    from tenantctl.routing import describe, read_map
    from tenantctl.routing.s3 import publish_map

    routing_map = read_map(Path(location))
    etag = publish_map(url, routing_map)
    if output_format is OutputFormat.json:
        print_json({**describe(routing_map), "url": url, "etag": etag})
    else:
        out.print(f"published serial {routing_map.serial} to {url}", markup=False)


def proxy(
    routes: str = typer.Option(..., "--routes", "-r", help="Routing map file or s3://BUCKET/KEY."),
    listen: str = typer.Option("127.0.0.1:6432", "--listen", "-l", help="HOST:PORT for PostgreSQL clients."),
    admin: str | None = typer.Option(None, "--admin", help="HOST:PORT for /healthz and /metrics (off if unset)."),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", help="PEM certificate for client TLS."),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="PEM private key for client TLS."),
    require_tls: bool = typer.Option(False, "--require-tls", help="Refuse clients that do not use TLS (the "
                                     "default once --tls-cert is given)."),
    allow_plaintext: bool = typer.Option(
        False, "--allow-plaintext",
        help="With --tls-cert, also accept plaintext clients. Off by default: libpq's sslmode=prefer retries a "
             "failed TLS login in plaintext, which this proxy does not let happen silently."),
    startup_timeout: float = typer.Option(30.0, "--startup-timeout",
                                          help="Seconds a client has to finish the handshake."),
    drain_timeout: float = typer.Option(30.0, "--drain-timeout",
                                        help="On SIGTERM: seconds to wait for sessions before closing them."),
    watch_interval: float | None = typer.Option(None, "--watch-interval",
                                                help="Seconds between checks for a new map (1 file, 10 S3)."),
    max_startup_packet: int = typer.Option(10_000, "--max-startup-packet", help="Largest startup packet (bytes)."),
    max_pending_handshakes: int = typer.Option(
        1024, "--max-pending-handshakes", min=1,
        help="Clients still authenticating, all addresses together; more get 53300. Authenticating "
             "clients never hold a tenant's connection slots."),
    max_pending_per_address: int = typer.Option(
        64, "--max-pending-per-address", min=1,
        help="Clients still authenticating from one address; more get 53300."),
    relay: str = typer.Option("auto", "--relay",
                              help="auto (native when built), native (fail if not built) or python."),
    relay_threads: int | None = typer.Option(None, "--relay-threads",
                                             help="Native relay worker threads (default 2; 1 on a single core)."),
    relay_nice: int | None = typer.Option(
        None, "--relay-nice",
        help="Nice levels the relay workers run below the proxy's own threads, so handshakes, reloads and "
             "/healthz stay responsive on a saturated CPU (default 5; 0 where the proxy shares a host "
             "flat with other busy processes)."),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
    control_socket: Path | None = typer.Option(
        None, "--control-socket",
        help="Unix socket (created 0600, root or the proxy's user only) for `tenantctl proxy-control`: pause "
             "and resume one tenant's new connections, reload the map now, status."),
) -> None:
    """Run the tenant-routing PostgreSQL proxy (help text: PROXY_HELP)."""
    from tenantctl.proxy.app import ProxyConfig, parse_address, run_proxy

    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        raise InputError(f"--log-level: unknown level {log_level!r}")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if relay not in ("auto", "native", "python"):
        raise InputError(f"--relay: expected auto, native or python, got {relay!r}")
    config = ProxyConfig(
        routes=routes, listen=parse_address(listen, "--listen"),
        admin=parse_address(admin, "--admin") if admin else None,
        tls_cert=tls_cert, tls_key=tls_key, require_tls=require_tls, allow_plaintext=allow_plaintext,
        startup_timeout=startup_timeout,
        drain_timeout=drain_timeout, watch_interval=watch_interval, max_startup_packet=max_startup_packet,
        max_pending_handshakes=max_pending_handshakes, max_pending_per_address=max_pending_per_address,
        relay=relay, relay_threads=relay_threads, relay_nice=relay_nice,  # type: ignore[arg-type]  # checked above
        control_socket=control_socket,
    )

    def started(port: int, admin_port: int | None) -> None:
        admin_note = f", admin http://{config.admin[0]}:{admin_port}" if config.admin and admin_port else ""
        err.print(f"tenantctl proxy listening on {config.listen[0]}:{port}{admin_note}", markup=False)

    run_proxy(config, started)


control_app = typer.Typer(
    name="proxy-control",
    help=("Control a running proxy through its --control-socket: pause or resume one tenant's new "
          "connections (queued, not refused; a pause ends by itself after --max-seconds), reload the "
          "routing map now, show paused tenants and open sessions."),
    no_args_is_help=True,
)
SOCKET_OPTION = typer.Option(..., "--socket", "-s", help="The proxy's --control-socket path.")


def _control(socket_path: Path, document: dict[str, object], output: OutputFormat) -> dict[str, object]:
    from tenantctl.proxy.control import request

    answer = request(socket_path, document)
    if output is OutputFormat.json:
        print_json(answer)
    return answer


@control_app.command("pause")
def control_pause(
    tenant: str = typer.Argument(..., help="Tenant name (as in the clients file)."),
    socket_path: Path = SOCKET_OPTION,
    max_seconds: float = typer.Option(10.0, "--max-seconds", help="The pause ends by itself after this long "
                                      "(at most 600)."),
    reason: str = typer.Option("", "--reason", help="Shown in status and the proxy's log."),
    output: OutputFormat = FORMAT_OPTION,
) -> None:
    """Hold TENANT's new connections (existing sessions go on) until resumed or --max-seconds pass."""
    answer = _control(socket_path, {"op": "pause", "tenant": tenant, "max_seconds": max_seconds,
                                    "reason": reason}, output)
    if output is OutputFormat.text:
        out.print(f"{tenant} paused; resumes by itself in {answer['pause']['resumes_in_s']:.1f}s",  # type: ignore[index]
                  markup=False)


@control_app.command("resume")
def control_resume(tenant: str = typer.Argument(...), socket_path: Path = SOCKET_OPTION,
                   output: OutputFormat = FORMAT_OPTION) -> None:
    """Release TENANT's queued connections; they are routed with the map in force now."""
    answer = _control(socket_path, {"op": "resume", "tenant": tenant}, output)
    if output is OutputFormat.text:
        resumed = answer.get("resumed")
        out.print(f"{tenant} resumed after {resumed['paused_seconds']:.3f}s ({resumed['queued']} queued)"  # type: ignore[index]
                  if resumed else f"{tenant} was not paused", markup=False)


@control_app.command("reload")
def control_reload(socket_path: Path = SOCKET_OPTION, output: OutputFormat = FORMAT_OPTION) -> None:
    """Re-read the routing map now (as SIGHUP does) and tell which serial is served."""
    answer = _control(socket_path, {"op": "reload"}, output)
    if output is OutputFormat.text:
        out.print(f"serving routing map serial {answer['serial']}", markup=False)


@control_app.command("status")
def control_status(socket_path: Path = SOCKET_OPTION, output: OutputFormat = FORMAT_OPTION) -> None:
    """Paused tenants (queued connections, time left) and open sessions per tenant."""
    answer = _control(socket_path, {"op": "status"}, output)
    if output is OutputFormat.text:
        out.print(f"routing map serial {answer['serial']}", markup=False)
        for tenant, pause in (answer.get("paused") or {}).items():  # type: ignore[attr-defined]
            out.print(f"paused {tenant}: {pause['queued']} queued, {pause['paused_for_s']:.1f}s so far, "
                      f"resumes in {pause['resumes_in_s']:.1f}s", markup=False)
        for tenant, count in (answer.get("sessions") or {}).items():  # type: ignore[attr-defined]
            out.print(f"sessions {tenant}: {count}", markup=False)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.add_typer(routes_app, name="routes")
    app.command("proxy", help=PROXY_HELP)(proxy)
    app.add_typer(control_app, name="proxy-control")
