"""Everything needed to run Terraform for one clients file: toolchain, AWS target, backend, secrets."""

from __future__ import annotations

from tenantctl.aws.session import target_for
from tenantctl.aws.state_backend import ensure_local_state_backend
from tenantctl.local.moto import ensure_moto
from tenantctl.model.types import Model
from tenantctl.terraform.pipeline import TerraformEnvironment
from tenantctl.terraform.secret_vars import local_secret_env
from tenantctl.terraform.toolchain import ensure_toolchain
from tenantctl.terraform.workspace import Workspace


def terraform_environment(model: Model, workspace: Workspace) -> TerraformEnvironment:
    """Install the toolchain if needed; on the local target start (or reuse) moto and prepare the
    S3 backend in it when one is configured."""
    toolchain = ensure_toolchain(target=model.settings.target)
    settings = model.settings
    if settings.target == "local":
        moto = ensure_moto(workspace.state_dir)
        target = target_for(settings, moto.url)
        ensure_local_state_backend(target, settings.backend)
        return TerraformEnvironment(toolchain, target, settings.backend, local_secret_env(workspace.state_dir))
    return TerraformEnvironment(toolchain, target_for(settings), settings.backend)
