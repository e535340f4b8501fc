"""Renderers: golden files for the example and edge cases, plus targeted checks.

Regenerate goldens after an intended change: UPDATE_GOLDEN=1 pytest tests/unit/test_render.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from apprelease.api.spec import AppRelease, RevisionTemplate
from apprelease.cli.common import dump_yaml
from apprelease.render import (
    DesiredChildren,
    Policy,
    PolicyViolation,
    RenderError,
    TrackPlan,
    labels,
    render_children,
    render_initial,
)
from apprelease.render.hashing import revision_hash
from apprelease.render.merge import merge
from tests.support import DATA, EXAMPLE, load_yaml

CASES = [*sorted((DATA / "render").glob("*.yaml")), EXAMPLE]
GOLDEN = DATA / "golden"


def _app(path: Path, uid: str | None = "0b1c7e5a-1111-2222-3333-444455556666") -> AppRelease:
    body = load_yaml(path)
    if uid:
        body["metadata"]["uid"] = uid
    return AppRelease.model_validate(body)


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden(path: Path) -> None:
    rendered = dump_yaml(render_initial(_app(path)))
    golden = GOLDEN / f"{path.stem}.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(rendered)
    assert golden.exists(), f"missing {golden}; run with UPDATE_GOLDEN=1"
    assert rendered == golden.read_text()


def _by_kind(objs: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for obj in objs:
        out.setdefault(obj["kind"], []).append(obj)
    return out


def test_example_renders_four_children_owned_by_the_app() -> None:
    objs = render_initial(_app(EXAMPLE))
    assert [o["kind"] for o in objs] == ["ConfigMap", "Service", "Deployment", "Ingress"]
    for obj in objs:
        ref = obj["metadata"]["ownerReferences"][0]
        assert ref["kind"] == "AppRelease" and ref["controller"] is True
        assert obj["metadata"]["labels"][labels.MANAGED_BY] == "apprelease"


def test_offline_render_has_no_owner_reference() -> None:
    objs = render_initial(_app(EXAMPLE, uid=None))
    assert all("ownerReferences" not in o["metadata"] for o in objs)


def test_service_selects_the_app_not_the_revision_or_track() -> None:
    kinds = _by_kind(render_initial(_app(EXAMPLE)))
    selector = kinds["Service"][0]["spec"]["selector"]
    assert selector == {labels.NAME: "order-service", labels.INSTANCE: "order-service"}
    dep = kinds["Deployment"][0]
    assert dep["spec"]["selector"]["matchLabels"][labels.TRACK] == "stable"
    assert labels.REVISION not in dep["spec"]["selector"]["matchLabels"]
    assert dep["spec"]["template"]["metadata"]["labels"][labels.REVISION] == "1"


def test_configmap_is_immutable_and_named_by_content() -> None:
    app = _app(EXAMPLE)
    cm = _by_kind(render_initial(app))["ConfigMap"][0]
    assert cm["immutable"] is True
    body = load_yaml(EXAMPLE)
    body["spec"]["config"]["files"]["application.yml"] += "# changed\n"
    cm2 = _by_kind(render_initial(AppRelease.model_validate(body)))["ConfigMap"][0]
    assert cm["metadata"]["name"] != cm2["metadata"]["name"]
    assert cm["metadata"]["name"].startswith("order-service-config-")


def test_readiness_defaults_to_tcp_on_first_port() -> None:
    body = load_yaml(EXAMPLE)
    del body["spec"]["readinessProbe"]
    dep = _by_kind(render_initial(AppRelease.model_validate(body)))["Deployment"][0]
    assert dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] == {
        "tcpSocket": {"port": 5000}
    }


def test_pod_template_cannot_change_selector_labels() -> None:
    objs = render_initial(_app(DATA / "render" / "pod-template-escape-hatch.yaml"))
    pod = _by_kind(objs)["Deployment"][0]["spec"]["template"]
    assert pod["metadata"]["labels"][labels.NAME] == "billing"
    assert pod["metadata"]["labels"]["team"] == "payments"
    names = [c["name"] for c in pod["spec"]["containers"]]
    assert names == ["billing", "log-shipper"]
    main = pod["spec"]["containers"][0]
    assert main["image"] == "registry.local/billing:1.4.2"
    assert main["securityContext"] == {"readOnlyRootFilesystem": True}


def test_nginx_canary_ingress_and_track_services() -> None:
    app = _app(DATA / "render" / "nginx-canary.yaml")
    template = app.spec.revision_template()
    stable = TrackPlan("stable", 1, revision_hash(template), template, 4)
    canary = TrackPlan("canary", 2, "abc", template.model_copy(update={"image": "x:2"}), 1)
    objs = render_children(app, DesiredChildren(tracks=(stable, canary), nginx_canary_weight=5))
    kinds = _by_kind(objs)
    assert [s["metadata"]["name"] for s in kinds["Service"]] == ["search", "search-stable", "search-canary"]
    assert kinds["Service"][2]["spec"]["selector"][labels.TRACK] == "canary"
    assert "nodePort" not in kinds["Service"][1]["spec"]["ports"][0]
    main, canary_ing = kinds["Ingress"]
    assert main["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "search-stable"
    assert canary_ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"] == "5"
    assert canary_ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "search-canary"
    assert [d["metadata"]["name"] for d in kinds["Deployment"]] == ["search", "search-canary"]


def test_ingress_port_must_name_a_port() -> None:
    body = load_yaml(EXAMPLE)
    body["spec"]["ingress"]["port"] = "admin"
    with pytest.raises(RenderError, match=r"'admin' is not the name of any of spec\.ports"):
        render_initial(AppRelease.model_validate(body))


def test_two_ports_on_one_service_port_is_a_render_error() -> None:
    body = load_yaml(EXAMPLE)
    del body["spec"]["port"]
    body["spec"]["ports"] = [
        {"name": "a", "containerPort": 80},
        {"name": "b", "containerPort": 81, "servicePort": 80},
    ]
    body["spec"]["service"] = {}
    with pytest.raises(RenderError, match="both map to Service port 80"):
        render_initial(AppRelease.model_validate(body))


def test_a_configmap_over_a_mebibyte_in_utf8_is_a_render_error() -> None:
    """The CRD counts characters (CEL cannot afford bytes for 256 files): 400,000 CJK
    characters pass it but are 1.2 MB in UTF-8, which no ConfigMap holds (finding 16)."""
    body = load_yaml(EXAMPLE)
    body["spec"]["config"]["files"] = {"zh.properties": "\u4e2d" * 400_000}
    app = AppRelease.model_validate(body)
    with pytest.raises(RenderError, match=r"spec\.config: files and env values are 1200\d+ bytes in UTF-8"):
        render_initial(app)
    body["spec"]["config"]["files"] = {"zh.properties": "\u4e2d" * 300_000}  # 900 kB
    assert any(c["kind"] == "ConfigMap" for c in render_initial(AppRelease.model_validate(body)))


def test_merge_named_lists_and_maps() -> None:
    base = {"spec": {"containers": [{"name": "a", "image": "x", "env": [{"name": "A", "value": "1"}]}],
                     "tolerations": [{"key": "k"}]}}
    overlay = {"spec": {"containers": [{"name": "a", "env": [{"name": "B", "value": "2"}]},
                                       {"name": "side", "image": "y"}],
                        "tolerations": [{"key": "other"}]}}
    merged = merge(base, overlay)
    assert merged["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert merged["spec"]["containers"][1] == {"name": "side", "image": "y"}
    assert merged["spec"]["tolerations"] == [{"key": "other"}]
    assert base["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}]  # not mutated


def test_revision_hash_ignores_formatting_but_not_content() -> None:
    a = _app(EXAMPLE).spec.revision_template()
    body = yaml.safe_load(yaml.safe_dump(load_yaml(EXAMPLE), default_flow_style=True))
    b = AppRelease.model_validate(body).spec.revision_template()
    assert revision_hash(a) == revision_hash(b)
    assert revision_hash(a) != revision_hash(a.model_copy(update={"image": "other:1"}))


@pytest.mark.parametrize(
    ("image", "version"),
    [("harbor.company.com/order/order-service:20250920v1", "20250920v1"),
     ("localhost:5000/app", "latest"),
     ("repo/app@sha256:0123456789abcdef", "0123456789ab"),
     ("app:1.2.3+build.7", "1.2.3-build.7")],
)
def test_version_label_from_image(image: str, version: str) -> None:
    assert labels.image_version(image) == version


@pytest.mark.parametrize("value", ["21978643e1", "1e3", "0x1F", "123", "1.5", "true", "no", "null", "~"])
def test_yaml_output_quotes_strings_a_go_reader_would_retype(value: str) -> None:
    text = dump_yaml([{"metadata": {"annotations": {"hash": value}}}])
    assert f"hash: '{value}'" in text
    assert yaml.safe_load(text)["metadata"]["annotations"]["hash"] == value


def test_yaml_output_leaves_plain_strings_plain() -> None:
    assert "image: nginx:1.27" in dump_yaml([{"image": "nginx:1.27"}])


def test_service_labels_cannot_override_our_selector_labels() -> None:
    """Admission rejects these keys now; the renderer keeps ours on top regardless."""
    app = AppRelease.model_validate(load_yaml(EXAMPLE))
    hostile = {labels.INSTANCE: "someone-else", labels.MANAGED_BY: "me", "team": "a"}
    service_spec = app.spec.service.model_copy(update={"labels": hostile})
    app = app.model_copy(update={"spec": app.spec.model_copy(update={"service": service_spec})})
    body = {"metadata": {"name": app.name}}
    service = _by_kind(render_initial(app))["Service"][0]
    assert service["metadata"]["labels"][labels.INSTANCE] == body["metadata"]["name"]
    assert service["metadata"]["labels"][labels.MANAGED_BY] == labels.MANAGER
    assert service["metadata"]["labels"]["team"] == "a"


def test_raw_nginx_snippets_are_denied_unless_the_policy_allows_them() -> None:
    body = load_yaml(EXAMPLE)
    body["spec"]["ingress"]["annotations"] = {
        "nginx.ingress.kubernetes.io/configuration-snippet": "more_set_headers x;",
        "nginx.ingress.kubernetes.io/proxy-body-size": "8m",
    }
    app = AppRelease.model_validate(body)
    template = app.spec.revision_template()
    desired = DesiredChildren(tracks=(TrackPlan("stable", 1, revision_hash(template), template, 1),))
    with pytest.raises(PolicyViolation, match="configuration-snippet not allowed"):
        render_children(app, desired)
    permissive = Policy(ingress_annotations_denied=())
    ingress = _by_kind(render_children(app, desired, permissive))["Ingress"][0]
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "8m"
    only_body_size = Policy(ingress_annotations_allowed=("nginx.ingress.kubernetes.io/proxy-body-size",))
    with pytest.raises(PolicyViolation):
        render_children(app, desired, only_body_size)


@pytest.mark.parametrize("pod_template, where", [
    ({"metadata": "x"}, "spec.podTemplate.metadata"),
    ({"spec": {"containers": {"name": "a"}}}, "spec.podTemplate.spec.containers"),
    ({"spec": {"containers": ["sidecar"]}}, "spec.podTemplate.spec.containers[0]"),
    ({"spec": []}, "spec.podTemplate.spec"),
    # Admitted (podTemplate is free-form), but the apiserver would keep int64's minimum instead.
    ({"spec": {"terminationGracePeriodSeconds": 2**64}}, "spec.podTemplate.spec.terminationGracePeriodSeconds"),
    ({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": -(2**63) - 1}]}]}},
     "spec.podTemplate.spec.containers[0].ports[0].containerPort"),
])
def test_a_pod_template_of_the_wrong_shape_is_a_render_error_naming_the_field(pod_template: dict, where: str) -> None:
    """Admission rejects these shapes now; a revision stored before that (history is replayed
    on rollback) must still end in a verdict, not a TypeError."""
    app = AppRelease.model_validate(load_yaml(EXAMPLE))
    stored = RevisionTemplate.model_validate({"image": "x:1", "podTemplate": pod_template})
    desired = DesiredChildren(tracks=(TrackPlan("stable", 1, revision_hash(stored), stored, 1),))
    with pytest.raises(RenderError) as caught:
        render_children(app, desired)
    assert str(caught.value).startswith(where + ":")
