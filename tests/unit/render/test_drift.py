"""check_stacks: the GitOps drift check behind `tenantctl render --check`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tenantctl.model.types import Model
from tenantctl.render import StaleFile, check_stacks, render_stacks


def test_in_sync_after_render(model: Model, tmp_path: Path) -> None:
    render_stacks(model, tmp_path)
    assert check_stacks(model, tmp_path) == []


def test_reports_missing_different_and_unexpected_files(model: Model, tmp_path: Path) -> None:
    render_stacks(model, tmp_path)
    (tmp_path / "cluster" / "outputs.tf").unlink()
    with (tmp_path / "tenants" / "client01" / "iam.tf").open("ab") as fh:
        fh.write(b"# hand edit\n")
    (tmp_path / "tenants" / "client01" / "extra.tf").write_text("locals {}\n")
    (tmp_path / "tenants" / "gone").mkdir()
    (tmp_path / "tenants" / "gone" / "iam.tf").write_text("")
    assert check_stacks(model, tmp_path) == [
        StaleFile("cluster/outputs.tf", "missing"),
        StaleFile("tenants/client01/extra.tf", "unexpected"),
        StaleFile("tenants/client01/iam.tf", "different"),
        StaleFile("tenants/gone/iam.tf", "unexpected"),
    ]


def test_model_change_shows_up_as_drift(model: Model, tmp_path: Path) -> None:
    render_stacks(model, tmp_path)
    grown = replace(model.tenants[1], allowed_ips=("109.241.200.1/32",))
    stale = check_stacks(replace(model, tenants=(model.tenants[0], grown, model.tenants[2])), tmp_path)
    assert stale == [StaleFile("tenants/client02/iam.tf", "different")]


def test_empty_directory_is_all_missing(model: Model, tmp_path: Path) -> None:
    stale = check_stacks(model, tmp_path / "nothing-here")
    assert stale and {s.reason for s in stale} == {"missing"}


def test_ignores_dot_files_terraform_dirs_and_files_outside_the_stacks(model: Model, tmp_path: Path) -> None:
    render_stacks(model, tmp_path)
    (tmp_path / "cluster" / ".terraform").mkdir()
    (tmp_path / "cluster" / ".terraform" / "providers.txt").write_text("x")
    (tmp_path / "cluster" / ".terraform.lock.hcl").write_text("x")
    (tmp_path / "README.md").write_text("about these stacks")
    assert check_stacks(model, tmp_path) == []


def test_stale_file_json(model: Model, tmp_path: Path) -> None:
    assert StaleFile("cluster/main.tf", "missing").to_json() == {"path": "cluster/main.tf", "reason": "missing"}
