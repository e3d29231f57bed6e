"""The pure planner: desired state vs. a hand-made observed catalog."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from tenantctl.errors import BackendError
from tenantctl.model.desired import DesiredState
from tenantctl.postgres.catalog import (
    Marker,
    ObservedCluster,
    ObservedDatabase,
    ObservedRole,
    ObservedSchemas,
    Privileges,
)
from tenantctl.postgres.plan import PgPlan, Phase
from tenantctl.postgres.planner import compute_plan, databases_to_inspect, schema_state_hash

RDS_IAM = ObservedRole("rds_iam", False, True, -1, (), {}, (), False, None)
EMPTY = ObservedCluster("main", roles={"rds_iam": RDS_IAM}, databases={})


def converged(desired: DesiredState) -> ObservedCluster:
    """What the catalogs look like after a successful apply of ``desired``."""
    roles = {"rds_iam": RDS_IAM}
    databases = {}
    for tenant in desired.tenants:
        for spec in tenant.roles:
            settings = {} if not spec.login else {
                "statement_timeout": str(spec.statement_timeout_ms),
                "idle_in_transaction_session_timeout": str(spec.idle_in_transaction_timeout_ms)}
            roles[spec.name] = ObservedRole(spec.name, spec.login, True, spec.connection_limit, (), settings,
                                            spec.member_of, spec.password_auth, Marker(tenant.name).render())
        for db in tenant.databases:
            databases[db.name] = ObservedDatabase(
                db.name, db.owner, True,
                Privileges({db.owner: ("CONNECT", "CREATE", "TEMPORARY"),
                            tenant.login_role.name: ("CONNECT", "TEMPORARY")}),
                Marker(tenant.name, schema_state_hash(tenant, db.name)).render())
    return ObservedCluster("main", roles=roles, databases=databases)


def secrets_of(desired: DesiredState) -> frozenset[str]:
    return frozenset(f"tenantctl/{t.login_role.name}/postgres" for t in desired.tenants
                     if t.login_role.password_auth)


def test_from_empty_everything_is_created_in_a_crash_safe_order(desired_of: Callable[..., DesiredState]) -> None:
    desired = desired_of(("alpha", ["db1", "db2"], False), ("beta", ["app"], True))
    plan = compute_plan(desired, "main", EMPTY, secret_names=frozenset())
    phases = [a.phase for a in plan.actions]
    assert phases == sorted(phases)
    creates = [a for a in plan.actions if a.kind == "create_role"]
    assert [a.subject for a in creates] == ["alpha_owner", "beta_owner", "alpha", "beta"]
    databases = [a for a in plan.actions if a.kind == "create_database"]
    assert [a.subject for a in databases] == ["alpha_db1", "alpha_db2", "beta_app"]
    assert all(not a.transactional for a in databases)
    db1 = [a for a in plan.actions if a.subject == "alpha_db1"]
    assert [a.kind for a in db1] == ["create_database", "set_database_privileges", "set_database_privileges",
                                     "open_database", "reconcile_schemas"]
    public = next(a for a in db1 if a.kind == "set_database_privileges" and a.params["grantee"] == "public")
    assert public.params["privileges"] == []
    opened = next(a for a in db1 if a.kind == "open_database")
    assert public.phase < opened.phase  # PUBLIC loses CONNECT before anyone may connect
    passwords = [a for a in plan.actions if a.kind == "set_password"]
    assert [a.subject for a in passwords] == ["alpha"]  # beta authenticates with IAM
    memberships = {(a.subject, a.params["group"]) for a in plan.actions if a.kind == "grant_membership"}
    assert memberships == {("alpha", "alpha_owner"), ("beta", "beta_owner"), ("beta", "rds_iam")}
    assert set(plan.by_tenant()) == {"alpha", "beta"}


def test_converged_catalog_plans_nothing(desired_of: Callable[..., DesiredState]) -> None:
    desired = desired_of(("alpha", ["db1", "db2"], False), ("beta", ["app"], True))
    observed = converged(desired)
    plan = compute_plan(desired, "main", observed, secret_names=secrets_of(desired))
    assert plan.actions == () and plan.orphans == ()
    assert databases_to_inspect(desired, "main", observed.databases, deep=False) == []
    assert databases_to_inspect(desired, "main", observed.databases, deep=True) == [
        "alpha_db1", "alpha_db2", "beta_app"]


def test_drift_is_repaired_authoritatively(desired_of: Callable[..., DesiredState]) -> None:
    desired = desired_of(("alpha", ["app"], False), ("beta", ["app"], False))
    observed = converged(desired)
    roles = dict(observed.roles)
    roles["alpha"] = replace(roles["alpha"], connection_limit=5, elevated=("createrole",),
                             member_of=("alpha_owner", "beta_owner"), settings={})
    databases = dict(observed.databases)
    databases["beta_app"] = replace(databases["beta_app"], privileges=Privileges({
        "beta_owner": ("CONNECT", "CREATE", "TEMPORARY"), "beta": ("CONNECT", "TEMPORARY"),
        "public": ("CONNECT",), "alpha": ("CONNECT",)}))
    plan = compute_plan(desired, "main", replace(observed, roles=roles, databases=databases),
                        secret_names=secrets_of(desired))
    by_kind = {(a.kind, a.subject, str(a.params.get("group") or a.params.get("grantee") or "")) for a in plan.actions}
    assert ("revoke_membership", "alpha", "beta_owner") in by_kind
    assert ("set_database_privileges", "beta_app", "public") in by_kind
    assert ("set_database_privileges", "beta_app", "alpha") in by_kind
    alter = next(a for a in plan.actions if a.kind == "alter_role")
    assert alter.params == {"connection_limit": 50, "revoke_attributes": ["createrole"]}
    assert sum(a.kind == "set_role_setting" for a in plan.actions) == 2
    revoke = next(a for a in plan.actions if a.kind == "revoke_membership")
    grant_phase = Phase.MEMBERSHIPS
    assert revoke.phase < grant_phase


def test_schema_drift_seen_by_deep_inspection(desired_of: Callable[..., DesiredState]) -> None:
    desired = desired_of(("alpha", ["app"], False))
    observed = converged(desired)
    schemas = {"alpha_app": ObservedSchemas("alpha_app", True, Privileges(
        {"pg_database_owner": ("CREATE", "USAGE"), "public": ("CREATE", "USAGE"), "alpha": ("CREATE", "USAGE"),
         "intruder": ("USAGE",)}), ())}
    plan = compute_plan(desired, "main", replace(observed, schemas=schemas), secret_names=secrets_of(desired),
                        deep=True)
    [action] = plan.actions
    assert action.kind == "reconcile_schemas" and action.database == "alpha_app"
    assert action.params["revoke_schema_grantees"] == ["intruder"]
    assert "default privileges" in action.description


def test_changed_desired_schema_state_is_reapplied_without_deep(desired_of: Callable[..., DesiredState]) -> None:
    desired = desired_of(("alpha", ["app"], False))
    observed = converged(desired)
    databases = {"alpha_app": replace(observed.databases["alpha_app"], comment="tenantctl tenant=alpha state=old")}
    assert databases_to_inspect(desired, "main", databases, deep=False) == ["alpha_app"]
    plan = compute_plan(desired, "main", replace(observed, databases=databases), secret_names=secrets_of(desired))
    assert [a.kind for a in plan.actions] == ["reconcile_schemas"]


def test_missing_secret_regenerates_and_iam_tenants_lose_stray_passwords(
        desired_of: Callable[..., DesiredState]) -> None:
    desired = desired_of(("alpha", ["app"], False), ("beta", ["app"], True))
    observed = converged(desired)
    roles = dict(observed.roles)
    roles["beta"] = replace(roles["beta"], has_password=True)
    plan = compute_plan(desired, "main", replace(observed, roles=roles), secret_names=frozenset())
    kinds = {(a.kind, a.subject) for a in plan.actions}
    assert kinds == {("set_password", "alpha"), ("remove_password", "beta")}
    regenerate = next(a for a in plan.actions if a.kind == "set_password")
    assert regenerate.params == {"secret": "tenantctl/alpha/postgres", "regenerate": True}


def test_removed_tenants_and_databases_are_orphans_never_dropped(desired_of: Callable[..., DesiredState]) -> None:
    before = desired_of(("alpha", ["db1", "db2"], False), ("beta", ["app"], False))
    after = desired_of(("alpha", ["db1"], False))
    plan = compute_plan(after, "main", converged(before), secret_names=secrets_of(before))
    assert plan.actions == ()
    assert {(o.kind, o.name, o.tenant) for o in plan.orphans} == {
        ("role", "beta", "beta"), ("role", "beta_owner", "beta"), ("database", "beta_app", "beta"),
        ("database", "alpha_db2", "alpha")}


def test_missing_rds_iam_role_is_a_clear_error(desired_of: Callable[..., DesiredState]) -> None:
    desired = desired_of(("beta", ["app"], True))
    with pytest.raises(BackendError, match="rds_iam"):
        compute_plan(desired, "main", ObservedCluster("main", roles={}, databases={}))


def test_fingerprint_tracks_the_observed_state(desired_of: Callable[..., DesiredState]) -> None:
    desired = desired_of(("alpha", ["app"], False))
    observed = converged(desired)
    first = compute_plan(desired, "main", observed, secret_names=secrets_of(desired)).fingerprint
    assert compute_plan(desired, "main", observed, secret_names=secrets_of(desired)).fingerprint == first
    roles = dict(observed.roles)
    roles["alpha"] = replace(roles["alpha"], connection_limit=1)
    assert compute_plan(desired, "main", replace(observed, roles=roles),
                        secret_names=secrets_of(desired)).fingerprint != first
    unrelated = dict(observed.roles)
    unrelated["somebody_else"] = ObservedRole("somebody_else", True, True, -1, (), {}, (), True, None)
    assert compute_plan(desired, "main", replace(observed, roles=unrelated),
                        secret_names=secrets_of(desired)).fingerprint == first


def test_plan_json_round_trip(desired_of: Callable[..., DesiredState]) -> None:
    desired = desired_of(("alpha", ["db1"], False), ("beta", ["app"], True))
    plan = compute_plan(desired, "main", EMPTY, secret_names=frozenset())
    assert PgPlan.from_json(plan.to_json()) == plan
    assert plan.to_json()["summary"]["create_database"] == 2


def test_prefix_applies_to_every_object(desired_of: Callable[..., DesiredState]) -> None:
    desired = desired_of(("alpha", ["app"], False), prefix="acme_")
    plan = compute_plan(desired, "main", EMPTY, secret_names=frozenset())
    subjects = {a.subject for a in plan.actions}
    assert subjects == {"acme_alpha", "acme_alpha_owner", "acme_alpha_app"}


def test_a_database_marked_as_another_tenants_or_an_archive_is_never_taken_over(
        desired_of: Callable[..., DesiredState]) -> None:
    from tenantctl.errors import RefusedError

    desired = desired_of(("alpha", ["db1"], False))
    base = converged(desired)
    db = base.databases["alpha_db1"]
    for comment, expected in ((Marker("zulu").render(), "marked as tenant 'zulu''s, not 'alpha''s"),
                              (Marker("zulu", archived="20261203T101010Z").render(),
                               "archive of offboarded tenant 'zulu' (run 20261203T101010Z)"),
                              (Marker("alpha", archived="20261203T101010Z").render(),
                               "archive of offboarded tenant 'alpha'")):
        observed = replace(base, databases={**base.databases, "alpha_db1": replace(db, comment=comment)})
        with pytest.raises(RefusedError, match="will not take over") as raised:
            compute_plan(desired, "main", observed, secret_names=secrets_of(desired))
        assert expected in raised.value.message
    role = base.roles["alpha_owner"]
    observed = replace(base, roles={**base.roles, "alpha_owner": replace(role, comment=Marker("zulu").render())})
    with pytest.raises(RefusedError, match="role alpha_owner is marked as tenant 'zulu''s"):
        compute_plan(desired, "main", observed, secret_names=secrets_of(desired))
    # Unmarked objects (created by hand before tenantctl) are still adopted, and converged ones plan nothing.
    unmarked = replace(base, databases={**base.databases, "alpha_db1": replace(db, comment=None)})
    assert compute_plan(desired, "main", unmarked, secret_names=secrets_of(desired)).actions
    assert not compute_plan(desired, "main", base, secret_names=secrets_of(desired)).actions


def test_archives_are_reported_as_archives_not_as_unknown_orphans(desired_of: Callable[..., DesiredState]) -> None:
    desired = desired_of(("alpha", ["db1"], False))
    base = converged(desired)
    archive = ObservedDatabase("gone_db1__archived_20261203", "gone_owner", True, Privileges({}),
                               Marker("gone", archived="20261203T101010Z").render())
    observed = replace(base, databases={**base.databases, archive.name: archive})
    (orphan,) = compute_plan(desired, "main", observed, secret_names=secrets_of(desired)).orphans
    assert orphan.name == archive.name and "archive of tenant 'gone'" in orphan.reason
    assert orphan.archived == "20261203T101010Z"
