"""The preRollout hook Job: what is built from RunHook, how its end is read, and that a plan never prunes it."""

from __future__ import annotations

from typing import Any

from modelrollout.planning.hooks import LABEL_HOOK, build_hook_job, hook_job_name, hook_run
from modelrollout.planning.online import Owner
from modelrollout.planning.reconcile import Observed
from modelrollout.rollout.actions import HookRun, RunHook
from tests.unit.modelrollout.planning.test_reconcile import SETTINGS, V1, V2, md, observed, plan, serving, state

GATES = {
    "strategy": "canary",
    "canary": {"steps": [{"setWeight": 20}]},
    "gates": {
        "preRollout": {
            "command": ["python", "-m", "smoke"],
            "args": ["--requests", "50"],
            "env": [{"name": "EXPECT", "value": "200"}],
            "timeout": "2m",
            "retries": 1,
        }
    },
}
OWNER = Owner(name="iris", namespace="ml", uid="u-1")


def test_the_hook_job_tests_the_candidate_through_its_own_service_and_is_no_model_pod() -> None:
    resource = md("2", rollout=GATES)
    job = build_hook_job(resource.spec, OWNER, RunHook(job="abc-x1", revision=V2), image_default="img:1")
    assert job["metadata"]["name"] == "iris-pre-abc-x1"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    spec = job["spec"]
    assert spec["activeDeadlineSeconds"] == 120
    assert spec["backoffLimit"] == 1
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    container = pod["containers"][0]
    assert container["command"] == ["python", "-m", "smoke"]
    assert container["args"] == ["--requests", "50"]
    assert container["image"] == "img:1"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODEL_URL"] == "http://iris-canary.ml.svc:80"
    assert env["REVISION"] == V2.revision
    assert env["EXPECT"] == "200"
    labels = spec["template"]["metadata"]["labels"]
    assert labels[LABEL_HOOK] == "abc-x1"
    assert "modelrollout.dev/mode" not in labels  # no Service selects it, no revision health counts it


def test_a_long_name_is_shortened_to_a_label_value_and_stays_apart_from_a_similar_one() -> None:
    first = hook_job_name("m" * 60 + "a", "bbbb2222-t1xyz")
    second = hook_job_name("m" * 60 + "b", "bbbb2222-t1xyz")
    assert len(first) <= 63
    assert first.endswith("-pre-bbbb2222-t1xyz")
    assert first != second


def job(key: str, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": f"iris-pre-{key}", "labels": {LABEL_HOOK: key}}, "status": status}


def test_a_hook_run_is_read_from_the_jobs_conditions_and_a_failed_pods_last_words() -> None:
    assert hook_run({"metadata": {"name": "batch-run", "labels": {}}}) is None
    assert hook_run(job("k", active=1)) == HookRun("k", "Running", "running (1 active)")
    done = job("k", conditions=[{"type": "Complete", "status": "True"}])
    assert hook_run(done) == HookRun("k", "Succeeded")
    failed = job("k", failed=2, conditions=[{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                             "message": "Job has reached the specified backoff limit"}])  # fmt: skip
    pod = {
        "metadata": {"creationTimestamp": "2026-12-04T10:00:00Z"},
        "status": {"containerStatuses": [{"state": {"terminated": {"exitCode": 3, "message": "p99 0.4s > 0.2s"}}}]},
    }
    run = hook_run(failed, [pod])
    assert run is not None
    assert run.phase == "Failed"
    assert "BackoffLimitExceeded" in run.message
    assert "exit code 3: p99 0.4s > 0.2s" in run.message


def test_a_run_hook_becomes_a_job_in_the_plan_and_hook_jobs_are_never_pruned() -> None:
    status = serving(V1, canary=V2, phase="Progressing", current_step=0)
    resource = md("2", status=status, rollout=GATES)
    seen = observed(state(V1), state(V2, replicas=1), extra={("Job", "iris-pre-old-1")})
    seen = Observed(revisions=seen.revisions, existing=seen.existing, hooks={"old-1": HookRun("old-1", "Failed")})
    p = plan(resource, seen, actions=[RunHook(job="new-2", revision=V2)])
    assert [o["metadata"]["name"] for o in p.grow if o["kind"] == "Job"] == ["iris-pre-new-2"]
    assert ("Job", "iris-pre-old-1") not in p.delete
    assert SETTINGS.default_image in str(p.grow)
