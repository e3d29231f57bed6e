"""Who is running tenantctl, from where: the user, the host and, in CI, the run that did it.

Read from the environment only (no network): ``TENANTCTL_ACTOR`` overrides the user name (a pipeline
that runs as a service account can name the person who merged); the CI providers below are
recognised by their documented variables. Nothing secret is read: tokens are never touched.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Mapping
from typing import Any

ACTOR_ENV = "TENANTCTL_ACTOR"

# provider -> (variable that detects it, run id variable, triggering user variable)
_CI_PROVIDERS: tuple[tuple[str, str, str, str], ...] = (
    ("github-actions", "GITHUB_ACTIONS", "GITHUB_RUN_ID", "GITHUB_ACTOR"),
    ("gitlab-ci", "GITLAB_CI", "CI_PIPELINE_ID", "GITLAB_USER_LOGIN"),
    ("buildkite", "BUILDKITE", "BUILDKITE_BUILD_ID", "BUILDKITE_BUILD_CREATOR"),
    ("circleci", "CIRCLECI", "CIRCLE_WORKFLOW_ID", "CIRCLE_USERNAME"),
    ("jenkins", "JENKINS_URL", "BUILD_TAG", "BUILD_USER_ID"),
    ("azure-pipelines", "TF_BUILD", "BUILD_BUILDID", "BUILD_REQUESTEDFOR"),
)
_URL_VARIABLES = {"gitlab-ci": "CI_PIPELINE_URL", "buildkite": "BUILDKITE_BUILD_URL",
                  "circleci": "CIRCLE_BUILD_URL", "jenkins": "BUILD_URL"}


def ci_run(env: Mapping[str, str]) -> dict[str, Any] | None:
    """The CI run this process belongs to, or None outside CI."""
    for provider, detect, run_id, user in _CI_PROVIDERS:
        if env.get(detect):
            return {"provider": provider, "run_id": env.get(run_id) or None, "url": _run_url(provider, env),
                    "user": env.get(user) or None}
    if env.get("CI"):
        return {"provider": "ci", "run_id": env.get("CI_RUN_ID") or None, "url": None, "user": None}
    return None


def _run_url(provider: str, env: Mapping[str, str]) -> str | None:
    if provider == "github-actions" and env.get("GITHUB_RUN_ID"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        return f"{server}/{env.get('GITHUB_REPOSITORY', '')}/actions/runs/{env['GITHUB_RUN_ID']}"
    variable = _URL_VARIABLES.get(provider)
    return (env.get(variable) or None) if variable else None


def current_actor(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    env = os.environ if env is None else env
    user = env.get(ACTOR_ENV)
    if not user:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry (containers)
            user = str(os.getuid())
    return {"user": user, "host": socket.gethostname(), "ci": ci_run(env)}


def describe(actor: Mapping[str, Any]) -> str:
    """``alice@build-7 (github-actions run 123)``."""
    text = f"{actor.get('user')}@{actor.get('host')}"
    ci = actor.get("ci")
    if ci:
        text += f" ({ci['provider']} run {ci.get('run_id') or '?'})"
    return text
