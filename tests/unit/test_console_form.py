"""The deploy form ⇄ AppRelease, the apiserver's causes → fields, revision diffs, CSRF,
identities: the console's pure parts."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from apprelease.api.spec import AppRelease
from apprelease.console import csrf, form
from apprelease.console.access import NotAuthenticated, ProxyHeaders, identity_from_headers
from apprelease.rollout import diff
from tests.support import EXAMPLE, load_yaml, merge_patch

POSTED = {
    "name": "shop", "namespace": "team-a", "image": "harbor.company.com/team/shop:v1", "replicas": "3",
    "port": "8080", "env-0-name": "GREETING", "env-0-source": "value", "env-0-value": "hello",
    "env-1-name": "DB_PASSWORD", "env-1-source": "secret", "env-1-ref-name": "shop-db", "env-1-ref-key": "password",
    "env-2-name": "", "env-2-source": "value", "env-2-value": "",
    "config-mount": "/etc/shop", "file-0-name": "app.yml", "file-0-content": "a: 1\r\nb: 2\r\n",
    "cpu-request": "250m", "memory-limit": "512Mi", "probe": "http", "probe-path": "/health", "probe-port": "",
    "service-type": "ClusterIP", "service-port": "80", "ingress-host": "shop.company.com", "ingress-path": "/",
    "ingress-class": "nginx", "strategy": "canary", "canary-steps": "20%, pause, 50, pause 30s",
    "nacos-server": "nacos.nacos.svc:8848", "nacos-namespace": "public", "nacos-group": "DEFAULT_GROUP",
    "nacos-service": "",
}


def test_form_to_app_release() -> None:
    parsed = form.parse(POSTED)
    assert len(parsed.env) == 2  # the blank row is dropped
    obj, errors = form.to_app_release(parsed)
    assert errors == {}
    spec = obj["spec"]
    assert obj["metadata"] == {"name": "shop", "namespace": "team-a"}
    assert spec["env"] == [{"name": "GREETING", "value": "hello"},
                           {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "shop-db", "key": "password"}}}]
    assert spec["config"] == {"mountPath": "/etc/shop", "files": {"app.yml": "a: 1\nb: 2\n"}}
    assert spec["resources"] == {"requests": {"cpu": "250m"}, "limits": {"memory": "512Mi"}}
    assert spec["readinessProbe"] == {"httpGet": {"path": "/health", "port": 8080}}
    assert spec["service"] == {"port": 80}
    assert spec["ingress"] == {"host": "shop.company.com", "path": "/", "className": "nginx"}
    assert spec["strategy"]["canary"]["steps"] == [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50},
                                                   {"pause": {"duration": "30s"}}]
    assert spec["registry"]["nacos"]["serviceName"] == "shop"
    AppRelease.model_validate(obj)  # what the operator will read


def test_bad_numbers_and_steps_are_caught_before_the_apiserver() -> None:
    _, errors = form.to_app_release(form.parse({**POSTED, "replicas": "three", "canary-steps": "20, wait"}))
    assert errors == {"replicas": "'three' is not a whole number",
                      "canary-steps": "'wait': write a weight (20 or 20%), pause, or pause 30s"}


def test_the_example_survives_the_form_round_trip() -> None:
    """Edit = the live object, form fields replaced; nothing the form shows may change it."""
    live = load_yaml(EXAMPLE)
    live["metadata"].update(resourceVersion="42", annotations={"team": "orders"})
    edited, errors = form.to_app_release(form.from_app_release(live), live)
    assert errors == {}
    assert edited["spec"] == live["spec"]
    assert form.merge_patch(live["spec"], edited["spec"]) == {}


def test_an_edit_keeps_what_the_form_cannot_show_and_patches_only_what_changed() -> None:
    live = load_yaml(EXAMPLE)
    live["metadata"]["resourceVersion"] = "42"
    live["spec"]["podTemplate"] = {"spec": {"nodeSelector": {"disk": "ssd"}}}
    live["spec"]["env"].append({"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
    editing = form.from_app_release(live)
    assert any("POD_IP" in note for note in editing.notes)
    editing.image = "harbor.company.com/order/order-service:v3"
    editing.files = []
    editing.strategy = "rolling"
    new, _ = form.to_app_release(editing, live)
    patch = form.merge_patch(live["spec"], new["spec"])
    assert patch == {"image": "harbor.company.com/order/order-service:v3",
                     "config": {"files": None}, "strategy": None}
    assert merge_patch(live["spec"], patch) == new["spec"]
    assert new["spec"]["podTemplate"] == live["spec"]["podTemplate"]
    assert new["spec"]["env"][-1]["name"] == "POD_IP"
    assert new["metadata"]["resourceVersion"] == "42"


STRATEGIES = {
    "rolling": {"rolling": {"maxSurge": 1, "maxUnavailable": 0}},
    "recreate": {"recreate": {}},
    "canary": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}], "trafficRouting": "nginx",
                          "maxRestarts": 3}},
    "blueGreen": {"blueGreen": {"autoPromotionSeconds": 60, "scaleDownDelaySeconds": 120,
                                "previewIngress": {"host": "preview.company.com", "className": "nginx"}}},
    "a kind this form does not know": {"shadow": {"mirrorPercent": 10}},
    "a field this form does not know": {"canary": {"steps": [{"setWeight": 50}], "futureKnob": True}},
}


def posted(filled: form.DeployForm) -> dict[str, str]:
    """What the browser posts back for a form as the page shows it."""
    data = {form.field_name(name): str(getattr(filled, name)) for name in form.DeployForm.__dataclass_fields__
            if name not in ("env", "files", "notes")}
    for i, row in enumerate(filled.env):
        data |= {f"env-{i}-name": row.name, f"env-{i}-source": row.source, f"env-{i}-value": row.value,
                 f"env-{i}-ref-name": row.ref_name, f"env-{i}-ref-key": row.ref_key}
    for i, file in enumerate(filled.files):
        data |= {f"file-{i}-name": file.name, f"file-{i}-content": file.content}
    return data


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_strategy_survives_an_edit(name: str) -> None:
    """Editing a blue-green app used to send strategy: null, turning it into a rolling one."""
    live = load_yaml(EXAMPLE)
    live["metadata"]["resourceVersion"] = "42"
    live["spec"]["strategy"] = copy.deepcopy(STRATEGIES[name])
    editing = form.from_app_release(live)
    assert editing.strategy in form.strategy_choices(editing)  # the select shows it, so it is posted back
    editing = form.parse(posted(editing))
    editing.image = "harbor.company.com/order/order-service:v3"
    edited, errors = form.to_app_release(editing, live)
    assert errors == {}
    assert edited["spec"]["strategy"] == STRATEGIES[name]
    assert form.merge_patch(live["spec"], edited["spec"]) == {"image": "harbor.company.com/order/order-service:v3"}


def test_blue_green_is_offered_and_a_change_of_strategy_replaces_the_old_one() -> None:
    assert "blueGreen" in form.STRATEGIES
    live = load_yaml(EXAMPLE)
    live["metadata"]["resourceVersion"] = "42"
    live["spec"]["strategy"] = copy.deepcopy(STRATEGIES["blueGreen"])
    editing = form.from_app_release(live)
    assert editing.strategy == "blueGreen"
    editing.strategy = "canary"
    editing.canary_steps = "25, pause"
    edited, errors = form.to_app_release(editing, live)
    assert errors == {}
    assert edited["spec"]["strategy"] == {"canary": {"steps": [{"setWeight": 25}, {"pause": {}}]}}
    assert form.merge_patch(live["spec"], edited["spec"])["strategy"] == {
        "blueGreen": None, "canary": {"steps": [{"setWeight": 25}, {"pause": {}}]}}
    new_app = form.DeployForm(name="shop", image="registry.local/shop:v1", strategy="blueGreen")
    created, errors = form.to_app_release(new_app)
    assert errors == {} and created["spec"]["strategy"] == {"blueGreen": {}}
    AppRelease.model_validate(created)


@pytest.mark.parametrize("path, field", [
    ("spec.image", "image"), ("metadata.name", "name"), ("spec.env[1].name", "env-1-name"),
    ("spec.env[1].valueFrom.secretKeyRef.name", "env-1-ref-name"), ("spec.env[0].value", "env-0-value"),
    ("spec.strategy.canary.steps[1].setWeight", "canary-steps"), ("spec.resources.requests", "resources"),
    ("spec.strategy.blueGreen.previewIngress.host", "strategy"), ("spec.strategy", "strategy"),
    ("spec.registry.nacos.serverAddr", "nacos-server"), ("spec.ingress.host", "ingress-host"),
    ("spec.config.mountPath", "config-mount"), ("spec.service.port", "service-port"), ("spec.unknown", ""),
])
def test_apiserver_field_paths_map_to_form_fields(path: str, field: str) -> None:
    assert form.field_for(path) == field


def test_causes_go_beside_their_fields_the_rest_on_top() -> None:
    causes = [{"field": "spec.image", "message": "Invalid value: \"a b\": should match '^\\S+$'"},
              {"field": "spec.image", "message": "too long"}, {"field": "spec.podTemplate", "message": "bad"}]
    by_field, general = form.field_errors(causes, "AppRelease is invalid")
    assert by_field == {"image": "Invalid value: \"a b\": should match '^\\S+$'; too long"}
    assert general == ["spec.podTemplate: bad"]
    assert form.field_errors([], "forbidden") == ({}, ["forbidden"])


def test_steps_round_trip() -> None:
    steps = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "30s"}}]
    assert form.parse_steps(form.format_steps(steps)) == steps


def test_pause_in_integer_seconds_round_trips() -> None:
    # The API takes pause: {duration: 30}; the form showed "pause 30" and read it back as
    # the string "30", which the API refuses.
    steps = [{"setWeight": 20}, {"pause": {"duration": 30}}, {"pause": {"duration": 0}}]
    assert form.format_steps(steps) == "20, pause 30s, pause 0s"
    assert form.parse_steps("20, pause 30, pause 0s") == [
        {"setWeight": 20}, {"pause": {"duration": 30}}, {"pause": {"duration": "0s"}}]


def test_revision_diff_side_by_side_and_secret_references() -> None:
    left = {"image": "shop:v1", "env": [{"name": "A", "value": "1"},
                                        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
            "config": {"mountPath": "/etc", "files": {"app.yml": "a: 1\nb: 2\nc: 3\n", "old.yml": "x\n"}}}
    right = copy.deepcopy(left)
    right["image"] = "shop:v2"
    right["env"][0]["value"] = "2"
    right["config"]["files"] = {"app.yml": "a: 1\nb: 20\nc: 3\nd: 4\n"}
    result = diff.diff(1, left, 2, right)
    assert [(f.field, f.changed) for f in result.fields] == [("image", True), ("config mountPath", False)]
    assert [(e.field, e.left, e.right) for e in result.env if e.changed] == [("A", "1", "2")]
    assert next(e for e in result.env if e.field == "PW").left == "from secret s/k"
    app_yml = next(f for f in result.files if f.name == "app.yml")
    assert [(line.left, line.right, line.kind) for line in app_yml.lines] == [
        ("a: 1", "a: 1", "same"), ("b: 2", "b: 20", "changed"), ("c: 3", "c: 3", "same"), (None, "d: 4", "added")]
    assert next(f for f in result.files if f.name == "old.yml").lines == [diff.Line("x", None, "removed")]
    assert not result.identical and diff.diff(1, left, 1, left).identical


def test_csrf_tokens_bind_session_and_user() -> None:
    secret, session = csrf.new_secret(), csrf.new_session()
    token = csrf.token_for(secret, session, "console")
    ok = {"X-CSRF-Token": token, "Origin": "http://127.0.0.1:7070", "Sec-Fetch-Site": "same-origin"}
    assert csrf.check(secret, session, "console", ok, "127.0.0.1:7070") is None
    assert csrf.check(secret, session, "bearer:other", ok, "127.0.0.1:7070") == "invalid CSRF token (reload the page)"
    assert csrf.check(secret, "another-session", "console", ok, "127.0.0.1:7070") is not None
    assert csrf.check(secret, session, "console", {}, "127.0.0.1:7070") == "missing CSRF token (reload the page)"
    assert csrf.check(secret, None, "console", ok, "127.0.0.1:7070") is not None
    evil: dict[str, Any] = {**ok, "Origin": "https://evil.example"}
    assert csrf.check(secret, session, "console", evil, "127.0.0.1:7070") == "cross-site request refused"
    assert csrf.check(secret, session, "console", {**ok, "Sec-Fetch-Site": "cross-site"},
                      "127.0.0.1:7070") == "cross-site request refused"


def test_identities_by_mode() -> None:
    proxy = ProxyHeaders()
    assert identity_from_headers("kubeconfig", {"Authorization": "Bearer x"}, proxy).kind == "own"
    bearer = identity_from_headers("token", {"Authorization": "Bearer abc.def"}, proxy)
    assert (bearer.kind, bearer.token) == ("bearer", "abc.def")
    assert "abc" not in bearer.key and "abc" not in repr(bearer)  # never in caches' keys or logs
    with pytest.raises(NotAuthenticated):
        identity_from_headers("token", {"Authorization": "Basic dXNlcg=="}, proxy)
    user = identity_from_headers("impersonation", {"X-Forwarded-User": "alice",
                                                   "X-Forwarded-Groups": "dev, system:masters, ops"}, proxy)
    assert (user.user, user.groups) == ("alice", ("dev", "ops"))
    for refused in ({}, {"X-Forwarded-User": "system:admin"}):
        with pytest.raises(NotAuthenticated):
            identity_from_headers("impersonation", refused, proxy)


def test_analysis_steps_survive_an_edit_of_the_steps() -> None:
    gate = {"analysis": {"templates": [{"templateName": "error-rate"}], "args": [{"name": "svc", "value": "web"}]}}
    live = [{"setWeight": 20}, gate, {"setWeight": 50}]
    text = form.format_steps(live)
    assert text == "20, analysis, 50"
    assert form.parse_steps("10, analysis, 50, pause", live) == [{"setWeight": 10}, gate, {"setWeight": 50}, {"pause": {}}]
    with pytest.raises(ValueError, match="added in YAML"):
        form.parse_steps("20, analysis, analysis", live)
