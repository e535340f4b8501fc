"""Import (manifests → AppRelease) and adoption (keep what runs): pure, from the five
order-service YAMLs of the ops notes and generated Deployments."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apprelease.api.spec import AppRelease
from apprelease.cli import common
from apprelease.cli.adopt import import_command
from apprelease.cli.main import _register_subcommands, cli
from apprelease.k8s.client import ApiError
from apprelease.render import DesiredChildren, TrackPlan, render_children, render_initial
from apprelease.render.adoption import (
    AdoptionRefused,
    adopt,
    adoptable,
    differences,
    hpa_retarget,
    template_changes,
)
from apprelease.render.hashing import revision_hash
from apprelease.render.importer import (
    AppObjects,
    ImportError_,
    collect,
    find_deployment,
    import_app,
)
from tests.support import DATA, EXAMPLE, load_yaml

ORDER = DATA / "adopt" / "order-service.yaml"
UID = "0b1c7e5a-1111-2222-3333-444455556666"


def order_objects() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(ORDER.read_text()) if d]


def imported_from(objects: list[dict[str, Any]], name: str | None = None):
    return import_app(collect(find_deployment(objects, name), objects))


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind)


def rendered(app_body: dict[str, Any], uid: str | None = UID) -> list[dict[str, Any]]:
    body = copy.deepcopy(app_body)
    if uid:
        body["metadata"]["uid"] = uid
    return render_initial(AppRelease.model_validate(body))


# --- import -----------------------------------------------------------------------------


def test_the_five_order_service_yamls_become_one_app_release() -> None:
    imported = imported_from(order_objects())
    assert imported.app["metadata"] == {"name": "order-service", "namespace": "order-proj"}
    assert imported.app["spec"] == {
        "image": "harbor.company.com/order/order-service:20250920v1",
        "replicas": 3,
        "port": 5000,
        "env": [
            {"name": "SPRING_DATASOURCE_URL", "value": "jdbc:mysql://mysql:3306/orderdb"},
            {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "order-service-secret", "key": "db-password"}}},
        ],
        "config": {"mountPath": "/app/config", "subPath": True, "files": {
            "application.yml": of_kind(order_objects(), "ConfigMap")["data"]["application.yml"]}},
        "service": {"port": 80},
        "ingress": {"host": "order.company.com", "path": "/",
                    "annotations": {"nginx.ingress.kubernetes.io/rewrite-target": "/"}},
        "podTemplate": {"metadata": {"labels": {"app": "order-service"}}},
    }
    assert imported.notes == ("no readinessProbe: the AppRelease adds a TCP probe on the first port",)


def test_secret_values_never_reach_the_app_release() -> None:
    objects = order_objects()
    text = yaml.safe_dump(imported_from(objects).app) + yaml.safe_dump(adopt(collect(objects[0], objects), objects).app)
    assert "UEBzc3cwcmQ=" not in text and "P@ssw0rd" not in text
    assert "order-service-secret" in text  # the reference stays


def test_rendering_the_import_keeps_what_the_yamls_promise() -> None:
    children = rendered(imported_from(order_objects()).app)
    service, deployment = of_kind(children, "Service"), of_kind(children, "Deployment")
    ingress, configmap = of_kind(children, "Ingress"), of_kind(children, "ConfigMap")
    assert service["spec"]["ports"][0]["port"] == 80 and service["spec"]["ports"][0]["targetPort"] == "http"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"][0]["containerPort"] == 5000
    assert container["volumeMounts"][0]["mountPath"] == "/app/config/application.yml"
    assert container["volumeMounts"][0]["subPath"] == "application.yml"
    assert deployment["spec"]["template"]["metadata"]["labels"]["app"] == "order-service"
    assert configmap["data"] == of_kind(order_objects(), "ConfigMap")["data"]
    assert ingress["spec"]["rules"][0]["host"] == "order.company.com"
    assert ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] == {"number": 80}


def test_live_defaults_are_left_out_and_what_has_no_field_goes_to_the_pod_template() -> None:
    objects = order_objects()
    pod = objects[0]["spec"]["template"]["spec"]
    pod.update({"dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                "securityContext": {}, "terminationGracePeriodSeconds": 30, "nodeSelector": {"disk": "ssd"},
                "imagePullSecrets": [{"name": "harbor"}]})
    main = pod["containers"][0]
    main.update({"terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                 "imagePullPolicy": "IfNotPresent", "securityContext": {"runAsUser": 1000},
                 "readinessProbe": {"httpGet": {"path": "/actuator/health", "port": 5000, "scheme": "HTTP"},
                                    "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1,
                                    "failureThreshold": 3}})
    main["ports"][0]["hostPort"] = 5000
    pod["containers"].append({"name": "filebeat", "image": "elastic/filebeat:8",
                              "terminationMessagePath": "/dev/termination-log"})
    imported = imported_from(objects)
    spec = imported.app["spec"]
    assert spec["imagePullPolicy"] == "IfNotPresent"
    assert spec["readinessProbe"] == {"httpGet": {"path": "/actuator/health", "port": 5000}}
    assert spec["podTemplate"]["spec"] == {
        "containers": [{"name": "order-service", "securityContext": {"runAsUser": 1000}},
                       {"name": "filebeat", "image": "elastic/filebeat:8"}],
        "nodeSelector": {"disk": "ssd"},
        "imagePullSecrets": [{"name": "harbor"}],
    }
    assert "port 5000: hostPort has no field in the AppRelease" in imported.notes
    pod_spec = of_kind(rendered(imported.app), "Deployment")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod_spec["containers"]] == ["order-service", "filebeat"]
    assert pod_spec["containers"][0]["securityContext"] == {"runAsUser": 1000}


def test_a_whole_directory_mount_and_config_maps_that_do_not_fit() -> None:
    objects = order_objects()
    pod = objects[0]["spec"]["template"]["spec"]
    pod["containers"][0]["volumeMounts"] = [
        {"name": "config", "mountPath": "/app/config"},
        {"name": "certs", "mountPath": "/certs"},
        {"name": "renamed", "mountPath": "/etc/renamed"},
    ]
    pod["volumes"] += [{"name": "certs", "configMap": {"name": "certs"}},
                       {"name": "renamed", "configMap": {"name": "renamed", "items": [{"key": "a", "path": "b"}]}}]
    objects += [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "certs"}, "binaryData": {"ca": "AA=="}},
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "renamed"}, "data": {"a": "x"}}]
    imported = imported_from(objects)
    assert imported.app["spec"]["config"]["mountPath"] == "/app/config"
    assert "subPath" not in imported.app["spec"]["config"]
    kept = imported.app["spec"]["podTemplate"]["spec"]
    assert [v["name"] for v in kept["volumes"]] == ["certs", "renamed"]
    assert [m["name"] for m in kept["containers"][0]["volumeMounts"]] == ["certs", "renamed"]
    assert any("binaryData" in n for n in imported.notes) and any("renames keys" in n for n in imported.notes)


def test_a_mounted_config_map_that_was_not_given_stays_mounted() -> None:
    objects = [o for o in order_objects() if o["kind"] != "ConfigMap"]
    imported = imported_from(objects)
    assert "config" not in imported.app["spec"]
    assert imported.app["spec"]["podTemplate"]["spec"]["volumes"][0]["configMap"]["name"] == "order-service-config"
    assert "ConfigMap order-service-config was not read: volume config stays in podTemplate" in imported.notes


@pytest.mark.parametrize("source", ["env", "bootstrap", "flat", "placeholder"])
def test_a_nacos_server_named_in_env_or_a_mounted_bootstrap_fills_registry_nacos(source: str) -> None:
    objects = order_objects()
    main = objects[0]["spec"]["template"]["spec"]["containers"][0]
    configmap = of_kind(objects, "ConfigMap")
    if source == "env":
        main["env"].append({"name": "SPRING_CLOUD_NACOS_DISCOVERY_SERVER_ADDR", "value": "nacos.nacos.svc:8848"})
    elif source == "bootstrap":
        configmap["data"]["bootstrap.yml"] = (
            "spring:\n  application:\n    name: order\n  cloud:\n    nacos:\n      discovery:\n"
            "        server-addr: nacos.nacos.svc:8848\n        group: ORDER\n")
        main["volumeMounts"].append({"name": "config", "mountPath": "/app/config/bootstrap.yml",
                                     "subPath": "bootstrap.yml"})
    elif source == "flat":
        configmap["data"]["application.yml"] += "spring.cloud.nacos.discovery.server-addr: nacos:8848\n"
    else:
        main["env"].append({"name": "NACOS_SERVER_ADDR", "value": "${NACOS_HOST}:8848"})
    imported = imported_from(objects)
    nacos = (imported.app["spec"].get("registry") or {}).get("nacos")
    expected = {
        "env": {"serverAddr": "nacos.nacos.svc:8848", "serviceName": "order-service"},
        "bootstrap": {"serverAddr": "nacos.nacos.svc:8848", "group": "ORDER", "serviceName": "order"},
        "flat": {"serverAddr": "nacos:8848", "serviceName": "order-service"},
        "placeholder": None,
    }[source]
    assert nacos == expected
    if source == "placeholder":
        assert any("placeholders" in n for n in imported.notes)


def test_services_ingresses_and_the_hpa_of_the_app_are_found_others_not() -> None:
    objects = order_objects()
    objects += [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "order-debug"},
         "spec": {"selector": {"app": "order-service"}, "ports": [{"port": 5005}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "billing"}, "spec": {"selector": {"app": "billing"}}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "billing"},
         "spec": {"rules": [{"http": {"paths": [{"path": "/", "backend": {"service": {"name": "billing"}}}]}}]}},
        {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "order"},
         "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "order-service"}, "maxReplicas": 6}},
    ]
    found = collect(find_deployment(objects), objects)
    assert [s["metadata"]["name"] for s in found.services] == ["order-service", "order-debug"]
    assert [i["metadata"]["name"] for i in found.ingresses] == ["order-service"]
    assert [h["metadata"]["name"] for h in found.hpas] == ["order"]
    notes = import_app(found).notes
    assert any("Service order-debug also selects the pods" in n for n in notes)
    assert any("HorizontalPodAutoscaler order" in n for n in notes)
    assert hpa_retarget(found.hpas[0], "order-service")["spec"]["scaleTargetRef"]["kind"] == "AppRelease"


def test_several_rules_ports_and_a_nodeport_service() -> None:
    objects = order_objects()
    main = objects[0]["spec"]["template"]["spec"]["containers"][0]
    main["ports"] = [{"name": "web", "containerPort": 5000}, {"name": "metrics", "containerPort": 9090}]
    service = of_kind(objects, "Service")
    service["spec"].update({"type": "NodePort", "ports": [{"port": 80, "targetPort": 5000, "nodePort": 30080},
                                                          {"port": 9090, "targetPort": "metrics"}]})
    ingress = of_kind(objects, "Ingress")
    ingress["spec"]["ingressClassName"] = "nginx"
    ingress["spec"]["rules"].append({"host": "metrics.company.com", "http": {"paths": [
        {"path": "/metrics", "pathType": "Exact",
         "backend": {"service": {"name": "order-service", "port": {"name": "metrics"}}}}]}})
    spec = imported_from(objects).app["spec"]
    assert spec["ports"] == [{"name": "web", "containerPort": 5000, "servicePort": 80},
                             {"name": "metrics", "containerPort": 9090}]
    assert spec["service"]["type"] == "NodePort" and spec["service"]["nodePort"] == 30080
    assert spec["ingress"]["className"] == "nginx" and len(spec["ingress"]["rules"]) == 2
    assert spec["ingress"]["rules"][1]["paths"][0] == {"path": "/metrics", "pathType": "Exact", "port": "metrics"}
    rendered(imported_from(objects).app)  # and it renders


def test_a_recreate_strategy_and_deployment_timings_come_along() -> None:
    objects = order_objects()
    objects[0]["spec"].update({"strategy": {"type": "Recreate"}, "minReadySeconds": 5})
    spec = imported_from(objects).app["spec"]
    assert spec["strategy"] == {"recreate": {}} and spec["minReadySeconds"] == 5
    objects[0]["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert imported_from(objects).app["spec"]["strategy"] == {"rolling": {"maxSurge": 1, "maxUnavailable": 0}}


def test_no_deployment_or_two_is_an_error_naming_them() -> None:
    with pytest.raises(ImportError_, match="no Deployment"):
        find_deployment([of_kind(order_objects(), "Service")])
    second = copy.deepcopy(order_objects()[0])
    second["metadata"]["name"] = "billing"
    with pytest.raises(ImportError_, match="billing, order-service"):
        find_deployment([order_objects()[0], second])
    assert find_deployment([order_objects()[0], second], "billing")["metadata"]["name"] == "billing"


class ClusterKube:
    """Enough of Kube for import/adopt: objects by kind and name, writes recorded."""

    def __init__(self, objects: list[dict[str, Any]]):
        self.objects = {(o["kind"], o["metadata"]["name"]): o for o in objects}
        self.writes: list[tuple[str, str, str]] = []

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        if (kind, name) not in self.objects:
            raise ApiError(404, "NotFound", f"{kind} {name} not found")
        return copy.deepcopy(self.objects[(kind, name)])

    def list(self, kind: str, namespace: str, **query: Any) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for (k, _), o in self.objects.items() if k == kind]

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.writes.append(("create", obj["kind"], obj["metadata"]["name"]))
        self.objects[(obj["kind"], obj["metadata"]["name"])] = obj
        return obj

    def merge_patch(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.writes.append(("patch", kind, name))
        return patch

    def apply(self, obj: dict[str, Any], *, dry_run: bool = False, **_: Any) -> dict[str, Any]:
        assert dry_run, "adopt --dry-run writes nothing"
        live = copy.deepcopy(self.objects.get((obj["kind"], obj["metadata"]["name"]), {}))
        return {**live, "metadata": {**live.get("metadata", {}), **obj["metadata"]},
                "spec": {**live.get("spec", {}), **obj.get("spec", {})}}


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> ClusterKube:
    fake = ClusterKube([*order_objects(), {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "order"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "order-service"}, "maxReplicas": 6}}])
    monkeypatch.setattr(common.Context, "kube", property(lambda self: fake))
    _register_subcommands()
    return fake


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), prog_name="apprelease", env={"KUBECONFIG": None})


def test_adopt_creates_the_app_release_and_points_the_hpa_at_it(cluster: ClusterKube) -> None:
    result = run("adopt", "deploy/order-service", "-n", "order-proj")
    assert result.exit_code == 0, result.output
    assert cluster.writes == [("create", "AppRelease", "order-service"),
                              ("patch", "HorizontalPodAutoscaler", "order")]
    created = cluster.objects[("AppRelease", "order-service")]
    assert created["spec"]["adopt"]["selector"] == {"app": "order-service"}
    assert run("adopt", "deploy/order-service", "-n", "order-proj").exit_code == 4  # exists now


def test_adopt_dry_run_says_pods_stay_and_writes_nothing(cluster: ClusterKube) -> None:
    result = run("adopt", "deploy/order-service", "-n", "order-proj", "--dry-run")
    assert result.exit_code == 0, result.output
    assert cluster.writes == []
    assert "pods restart: no (pod template unchanged)" in result.stdout
    assert "ConfigMap order-service-config-" in result.stdout
    assert "HorizontalPodAutoscaler order: scaleTargetRef -> AppRelease order-service" in result.stdout


def test_a_refused_adoption_names_the_owner_and_writes_nothing(cluster: ClusterKube) -> None:
    cluster.objects[("Service", "order-service")]["metadata"]["annotations"] = {"meta.helm.sh/release-name": "shop"}
    result = run("adopt", "deploy/order-service", "-n", "order-proj")
    assert result.exit_code == 4
    assert "Service order-service is owned by Helm release shop" in result.stderr
    assert cluster.writes == []
    assert run("adopt", "svc/order-service").exit_code == 2


def test_import_reads_a_live_deployment(cluster: ClusterKube) -> None:
    result = run("import", "deploy/order-service", "-n", "order-proj")
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout)["spec"]["config"]["subPath"] is True
    assert cluster.writes == []


def test_import_from_files_on_the_command_line() -> None:
    result = CliRunner().invoke(import_command, ["-f", str(ORDER)], obj=common.Context())
    assert result.exit_code == 0, result.output
    app = yaml.safe_load(result.stdout)
    assert app["spec"]["image"] == "harbor.company.com/order/order-service:20250920v1"
    assert "note: no readinessProbe" in result.stderr


def test_our_own_rendering_imports_back_to_the_example() -> None:
    body = load_yaml(EXAMPLE)
    for field in ("registry", "strategy"):  # neither is visible in the Deployment it renders
        body["spec"].pop(field)
    spec = imported_from(rendered(body, uid=None)).app["spec"]
    for field in ("image", "replicas", "port", "env", "resources", "readinessProbe", "service"):
        assert spec[field] == body["spec"][field], field
    assert spec["config"]["files"] == body["spec"]["config"]["files"]
    assert spec["ingress"]["host"] == body["spec"]["ingress"]["host"]
    assert "podTemplate" not in spec  # nothing of ours leaks back as user settings


# --- adoption ---------------------------------------------------------------------------


def adopted(objects: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    objects = objects or order_objects()
    return adopt(collect(find_deployment(objects, "order-service" if objects[0]["metadata"]["name"] == "order-service"
                                          else None), objects), objects).app


def test_adopting_renders_the_running_deployment_exactly_and_keeps_its_selector() -> None:
    objects = order_objects()
    children = rendered(adopted(objects))
    deployment = of_kind(children, "Deployment")
    assert deployment["spec"]["template"] == objects[0]["spec"]["template"]
    assert deployment["spec"]["selector"] == {"matchLabels": {"app": "order-service"}}
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == UID
    service = of_kind(children, "Service")
    assert service["metadata"]["name"] == "order-service"
    assert service["spec"]["selector"] == {"app": "order-service"}
    assert service["spec"]["ports"][0]["targetPort"] == 5000  # the adopted port has no name
    assert of_kind(children, "Ingress")["metadata"]["name"] == "order-service"


def test_a_change_after_adoption_is_one_new_revision_that_keeps_the_selector() -> None:
    body = adopted()
    body["spec"]["image"] = "harbor.company.com/order/order-service:20251001v2"
    body["metadata"]["uid"] = UID
    app = AppRelease.model_validate(body)
    template = app.spec.revision_template()
    assert revision_hash(template) != app.spec.adopt.revision_hash
    plans = (TrackPlan("stable", 1, app.spec.adopt.revision_hash, template, 2),
             TrackPlan("canary", 2, revision_hash(template), template, 1))
    deployments = [c for c in render_children(app, DesiredChildren(tracks=plans)) if c["kind"] == "Deployment"]
    stable, canary = deployments
    assert stable["spec"]["template"] == app.spec.adopt.pod_template  # the adopted pods untouched
    assert canary["spec"]["selector"]["matchLabels"]["apprelease.io/track"] == "canary"
    labels = canary["spec"]["template"]["metadata"]["labels"]
    assert labels["app"] == "order-service" and labels["apprelease.io/revision"] == "2"
    promoted = next(c for c in render_children(app, DesiredChildren(tracks=(
        TrackPlan("stable", 2, revision_hash(template), template, 3),))) if c["kind"] == "Deployment")
    assert promoted["spec"]["selector"] == {"matchLabels": {"app": "order-service"}}
    assert promoted["spec"]["template"]["metadata"]["labels"]["app"] == "order-service"


def test_adopt_is_refused_for_strategies_needing_labels_the_adopted_pods_lack() -> None:
    body = adopted()
    body["spec"]["strategy"] = {"blueGreen": {}}
    with pytest.raises(ValueError, match=r"spec\.adopt works with"):
        AppRelease.model_validate(body)


def refused(objects: list[dict[str, Any]]) -> list[str]:
    with pytest.raises(AdoptionRefused) as caught:
        adopted(objects)
    return caught.value.reasons


def test_objects_held_by_helm_argo_or_another_app_release_are_refused_all_at_once() -> None:
    objects = order_objects()
    objects[0]["metadata"]["annotations"] = {"meta.helm.sh/release-name": "order", "meta.helm.sh/release-namespace": "ops"}
    of_kind(objects, "Service")["metadata"]["ownerReferences"] = [
        {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "order", "uid": "u", "controller": True}]
    of_kind(objects, "Ingress")["metadata"]["labels"] = {
        "app.kubernetes.io/managed-by": "apprelease", "app.kubernetes.io/instance": "billing"}
    assert refused(objects) == [
        "Deployment order-service is owned by Helm release order (namespace ops): release it there first",
        "Service order-service is owned by Rollout order: release it there first",
        "Ingress order-service is owned by AppRelease billing: release it there first",
    ]


def test_a_service_serving_two_deployments_is_refused() -> None:
    objects = order_objects()
    other = copy.deepcopy(objects[0])
    other["metadata"]["name"] = "order-worker"
    other["spec"]["template"]["metadata"]["labels"] = {"app": "order-service", "role": "worker"}
    other["spec"]["selector"] = {"matchLabels": {"app": "order-service", "role": "worker"}}
    reasons = refused([*objects, other])
    assert reasons[0] == ("Service order-service selects the pods of Deployments order-service and order-worker:"
                          " one Service must serve one app")
    assert "Deployment order-service's selector also selects the pods of order-worker" in reasons


def test_a_deployment_mid_rollout_paused_or_with_expressions_is_refused() -> None:
    objects = order_objects()
    objects[0]["metadata"]["generation"] = 3
    objects[0]["status"] = {"observedGeneration": 3, "updatedReplicas": 1}
    assert refused(objects) == ["Deployment order-service is rolling out: adopt it once its rollout is complete"]
    objects[0]["spec"]["paused"] = True
    objects[0]["spec"]["selector"]["matchExpressions"] = [{"key": "tier", "operator": "Exists"}]
    objects[0]["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = "billing"
    assert len(refused(objects)) == 3


def test_the_operator_applies_only_over_an_adoptable_object() -> None:
    app = AppRelease.model_validate({**adopted(), "metadata": {"name": "order-service", "uid": UID}})
    service = of_kind(order_objects(), "Service")
    assert adoptable(app, service)
    helm = copy.deepcopy(service)
    helm["metadata"]["labels"] = {"app.kubernetes.io/managed-by": "Helm"}
    assert not adoptable(app, helm)
    assert not adoptable(app, {"kind": "ConfigMap", "metadata": {"name": "order-service"}})
    plain = AppRelease.model_validate(rendered_body_without_adopt())
    assert not adoptable(plain, service)


def rendered_body_without_adopt() -> dict[str, Any]:
    body = adopted()
    body["spec"].pop("adopt")
    return body


def test_template_changes_name_the_field_that_would_restart_pods() -> None:
    live = order_objects()[0]
    live["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] = "7d9c8f6b59"
    live["spec"]["template"]["metadata"]["creationTimestamp"] = None
    same = copy.deepcopy(live)
    del same["spec"]["template"]["metadata"]["labels"]["pod-template-hash"]
    assert template_changes(live, same) == []
    changed = copy.deepcopy(same)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "order:v2"
    [change] = template_changes(live, changed)
    assert change.path == ".spec.template.spec.containers[0].image" and change.desired == "order:v2"
    assert differences([1], [1, 2])[0].path == "."


# --- property: render(import(x)) == x on the fields we own ------------------------------

names = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)
env_vars = st.lists(
    st.tuples(st.from_regex(r"[A-Z][A-Z0-9_]{0,10}", fullmatch=True),
              st.one_of(st.text(st.characters(codec="ascii", exclude_categories=("Cc",)), max_size=20)
                        .map(lambda v: {"value": v}),
                        st.tuples(names, names).map(lambda r: {"valueFrom": {"secretKeyRef": {"name": r[0], "key": r[1]}}}))),
    max_size=4, unique_by=lambda e: e[0],
).map(lambda items: [{"name": n, **v} for n, v in items])
quantities = st.sampled_from(["100m", "250m", "1", "64Mi", "1Gi"])


@st.composite
def rancher_apps(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A Deployment (+ Service, ConfigMap) as Rancher or a hand-written YAML has it."""
    name = draw(names)
    port = draw(st.integers(1024, 65535))
    selector = {"app": name}
    container: dict[str, Any] = {"name": name, "image": f"registry.local/{name}:{draw(names)}",
                                 "ports": [{"containerPort": port}]}
    env = draw(env_vars)
    if env:
        container["env"] = env
    if draw(st.booleans()):
        container["resources"] = {"requests": {"cpu": draw(quantities)}, "limits": {"memory": draw(quantities)}}
    if draw(st.booleans()):
        container["readinessProbe"] = {"httpGet": {"path": "/health", "port": port}, "periodSeconds": 5}
    files = draw(st.dictionaries(st.from_regex(r"[a-z]{1,8}\.(yml|properties)", fullmatch=True),
                                 st.text(max_size=40), min_size=1, max_size=3))
    pod: dict[str, Any] = {"containers": [container]}
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-config"}, "data": files}
    if draw(st.booleans()):
        container["volumeMounts"] = [{"name": "config", "mountPath": f"/app/config/{k}", "subPath": k} for k in files]
    else:
        container["volumeMounts"] = [{"name": "config", "mountPath": "/app/config"}]
    pod["volumes"] = [{"name": "config", "configMap": {"name": f"{name}-config"}}]
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                  "spec": {"replicas": draw(st.integers(0, 5)), "selector": {"matchLabels": selector},
                           "template": {"metadata": {"labels": dict(selector)}, "spec": pod}}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
               "spec": {"selector": selector, "ports": [{"port": draw(st.sampled_from([80, port])), "targetPort": port}]}}
    return [deployment, service, configmap]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rancher_apps())
def test_render_of_import_keeps_the_fields_we_own(objects: list[dict[str, Any]]) -> None:
    live, live_service, live_configmap = objects
    children = rendered(imported_from(objects).app)
    deployment = of_kind(children, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    want = live["spec"]["template"]["spec"]["containers"][0]
    assert deployment["spec"]["replicas"] == live["spec"]["replicas"]
    for field in ("image", "env", "resources", "readinessProbe"):
        if field in want:
            assert container[field] == want[field], field
    assert [p["containerPort"] for p in container["ports"]] == [p["containerPort"] for p in want["ports"]]
    assert sorted((m["mountPath"], m.get("subPath", "")) for m in container["volumeMounts"]) == sorted(
        (m["mountPath"], m.get("subPath", "")) for m in want["volumeMounts"])
    assert of_kind(children, "ConfigMap")["data"] == live_configmap["data"]
    service = of_kind(children, "Service")["spec"]["ports"][0]
    assert service["port"] == live_service["spec"]["ports"][0]["port"]
    assert deployment["spec"]["template"]["metadata"]["labels"]["app"] == live["metadata"]["name"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rancher_apps())
def test_adopting_any_deployment_changes_nothing_of_its_pod_template(objects: list[dict[str, Any]]) -> None:
    live = objects[0]
    deployment = of_kind(rendered(adopted(objects)), "Deployment")
    assert deployment["spec"]["template"] == live["spec"]["template"]
    assert deployment["spec"]["selector"] == live["spec"]["selector"]


def test_app_objects_list_everything() -> None:
    objects = order_objects()
    found = collect(objects[0], objects)
    assert isinstance(found, AppObjects) and len(found.all()) == 4


def test_a_same_named_service_or_ingress_of_something_else_is_refused() -> None:
    objects = order_objects()
    of_kind(objects, "Service")["spec"]["selector"] = {"app": "billing"}
    reasons = refused(objects)
    assert "Service order-service exists but does not select the Deployment's pods" in reasons[0]
    assert "Ingress order-service exists but does not route to its Services" in reasons[1]
