"""The real Terraform (offline 1.0.3, plus whatever terraform the toolchain runs) accepts rendered stacks:
``fmt -check`` on every stack of every target/engine, ``validate`` where the providers exist offline
(local target, native engine: hashicorp/aws 3.39.0 from the toolchain's mirror)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tenantctl.model import model_from_text
from tenantctl.render import render_stacks
from tenantctl.terraform.toolchain import ensure_toolchain, install_toolchain

pytestmark = pytest.mark.terraform

CLIENTS = """\
settings = {{ target = "{target}", postgres_engine = "{engine}", prefix = "acme_" {backend} }}
clusters = {{
  "shared-01" = {{ min_acu = 0.5, max_acu = 8 }}
  vip = {{ min_acu = 2, max_acu = 16, dedicated = true }}
}}
clients = [
  {{
    name = "client01", databases = {{ db1 = true, db2 = false, db3 = true }},
    allowed_ips = ["109.241.200.168/32"], rds_iam_auth = true
  }},
  {{
    name = "client02", databases = {{ app = true }}, allowed_ips = ["109.241.200.1/32", "8.8.8.0/24"],
    rds_iam_auth = false, tier = "premium", tags = {{ team = "payments", "cost:center" = "4711" }}
  }},
  {{
    name = "client03", databases = {{ reports = true }}, allowed_ips = ["198.51.200.7/32"],
    rds_iam_auth = true, cluster = "vip"
  }},
]
"""
S3_BACKEND = ', backend = { kind = "s3", bucket = "tf-state", dynamodb_table = "tf-locks" }'


@dataclass(frozen=True)
class Terraform:
    binaries: tuple[Path, ...]  # the pinned 1.0.3 first, then the toolchain's binary if different
    env: dict[str, str]

    def run(
        self, binary: Path, args: list[str], cwd: Path, data_dir: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **self.env}
        if data_dir is not None:
            env["TF_DATA_DIR"] = str(data_dir)
        return subprocess.run([str(binary), *args], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=300, check=False)


@pytest.fixture(scope="module")
def terraform() -> Terraform:
    layout = install_toolchain()
    toolchain = ensure_toolchain()
    binaries = [layout.terraform]
    if toolchain.terraform.resolve() != layout.terraform.resolve():
        binaries.append(toolchain.terraform)
    return Terraform(binaries=tuple(binaries), env=toolchain.env())


def render(tmp: Path, target: str, engine: str, backend: str = "") -> Path:
    out = tmp / f"{target}-{engine}{'-s3' if backend else ''}"
    model = model_from_text(CLIENTS.format(target=target, engine=engine, backend=backend))
    render_stacks(model, out, template_dirs=[])
    return out


def stack_dirs(out: Path) -> Iterator[Path]:
    yield out / "cluster"
    yield from sorted(p for p in (out / "tenants").iterdir() if p.is_dir())


def test_every_stack_is_terraform_fmt_clean(terraform: Terraform, tmp_path: Path) -> None:
    outs = [render(tmp_path, t, e) for t in ("local", "aws") for e in ("native", "terraform")]
    outs.append(render(tmp_path, "aws", "terraform", S3_BACKEND))
    for binary in terraform.binaries:
        done = terraform.run(binary, ["fmt", "-check", "-recursive", "-diff", "-no-color"], cwd=tmp_path)
        assert done.returncode == 0, f"{binary} fmt -check failed:\n{done.stdout}{done.stderr}"
    # The check is real: a misaligned file fails it.
    bad = outs[0] / "cluster" / "outputs.tf"
    bad.write_text(bad.read_text().replace("endpoint            =", "endpoint =", 1))
    done = terraform.run(terraform.binaries[0], ["fmt", "-check", "-recursive", "-no-color"], cwd=tmp_path)
    assert done.returncode == 3 and "outputs.tf" in done.stdout


def test_local_native_stacks_validate(terraform: Terraform, tmp_path: Path) -> None:
    out = render(tmp_path, "local", "native")
    binary = terraform.binaries[0]
    for stack in stack_dirs(out):
        data_dir = tmp_path / "tfdata" / stack.name
        init = terraform.run(binary, ["init", "-backend=false", "-input=false", "-no-color"], stack, data_dir)
        assert init.returncode == 0, f"init {stack}:\n{init.stdout}{init.stderr}"
        done = terraform.run(binary, ["validate", "-no-color"], stack, data_dir)
        assert done.returncode == 0, f"validate {stack}:\n{done.stdout}{done.stderr}"
        assert not (stack / ".terraform").exists()  # TF_DATA_DIR kept it out of the stack


def test_validate_would_catch_a_broken_template(terraform: Terraform, tmp_path: Path) -> None:
    overrides = tmp_path / "templates" / "tenant"
    overrides.mkdir(parents=True)
    (overrides / "broken.tf.j2").write_text('resource "aws_iam_user" "broken" {\n  nmae = "x"\n}\n')
    model = model_from_text(CLIENTS.format(target="local", engine="native", backend=""))
    render_stacks(model, tmp_path / "out", template_dirs=[tmp_path / "templates"])
    stack = tmp_path / "out" / "tenants" / "client02"
    binary = terraform.binaries[0]
    data_dir = tmp_path / "tfdata"
    init = terraform.run(binary, ["init", "-backend=false", "-input=false", "-no-color"], stack, data_dir)
    assert init.returncode == 0, init.stderr
    done = terraform.run(binary, ["validate", "-no-color"], stack, data_dir)
    assert done.returncode != 0 and "nmae" in done.stdout + done.stderr
