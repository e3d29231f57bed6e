"""Who applied: user, host and the CI run, from the environment only."""

from __future__ import annotations

from tenantctl.history.actor import ci_run, current_actor, describe


def test_github_actions_run_is_recognised_with_its_url() -> None:
    env = {"GITHUB_ACTIONS": "true", "GITHUB_RUN_ID": "42", "GITHUB_REPOSITORY": "acme/infra",
           "GITHUB_ACTOR": "alice", "GITHUB_TOKEN": "ghs_secret"}
    run = ci_run(env)
    assert run == {"provider": "github-actions", "run_id": "42", "user": "alice",
                   "url": "https://github.com/acme/infra/actions/runs/42"}
    assert "ghs_secret" not in str(current_actor(env))


def test_gitlab_and_generic_ci_and_no_ci() -> None:
    gitlab = ci_run({"GITLAB_CI": "true", "CI_PIPELINE_ID": "7", "CI_PIPELINE_URL": "https://gl/p/7"})
    assert gitlab is not None and (gitlab["provider"], gitlab["run_id"], gitlab["url"]) == ("gitlab-ci", "7",
                                                                                             "https://gl/p/7")
    generic = ci_run({"CI": "true"})
    assert generic is not None and generic["provider"] == "ci"
    assert ci_run({}) is None


def test_the_actor_override_names_the_person_a_pipeline_applies_for() -> None:
    actor = current_actor({"TENANTCTL_ACTOR": "bob", "GITHUB_ACTIONS": "true", "GITHUB_RUN_ID": "9"})
    assert actor["user"] == "bob" and actor["host"]
    assert describe(actor).startswith("bob@") and describe(actor).endswith("(github-actions run 9)")
