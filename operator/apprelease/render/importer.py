"""Manifests of a running app → an AppRelease. Pure: the CLI reads the objects, this decides.

The inverse of the renderers: a Deployment, the Services selecting its pods, the Ingresses
routing to those Services, the ConfigMaps it mounts and the HPA scaling it become one
AppRelease. What has a field of its own goes there; what does not fit is kept in
``podTemplate`` (merged back by the renderer) or, when it cannot be expressed at all, named
in the notes. Secret *values* are never read: env keeps ``secretKeyRef``s only.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..api.spec import API_VERSION, KIND, AppRelease
from . import labels as L
from .naming import service_name

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
HELM_RELEASE = "meta.helm.sh/release-name"
HELM_NAMESPACE = "meta.helm.sh/release-namespace"
# Annotations that tools write about their own bookkeeping, never the app's intent.
_TOOL_ANNOTATIONS = (LAST_APPLIED, "deployment.kubernetes.io/revision")
_TOOL_ANNOTATION_PREFIXES = ("field.cattle.io/", "meta.helm.sh/", "cattle.io/")

# What the apiserver fills in when a field is left out: dropped from podTemplate so the
# imported spec reads like what a person wrote (the apiserver adds them back identically).
_POD_SPEC_DEFAULTS: dict[str, Any] = {
    "dnsPolicy": "ClusterFirst",
    "restartPolicy": "Always",
    "schedulerName": "default-scheduler",
    "securityContext": {},
    "terminationGracePeriodSeconds": 30,
}
_CONTAINER_DEFAULTS: dict[str, Any] = {
    "terminationMessagePath": "/dev/termination-log",
    "terminationMessagePolicy": "File",
}
# Container fields the AppRelease spec has its own fields for.
_CONTAINER_OWNED = ("name", "image", "imagePullPolicy", "command", "args", "ports", "env", "envFrom",
                    "resources", "readinessProbe", "livenessProbe", "startupProbe", "volumeMounts")
_PROBE_DEFAULTS = {"timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
# Env names Spring Cloud Alibaba and the Nacos SDKs read the server address from.
NACOS_ADDR_ENV = ("SPRING_CLOUD_NACOS_DISCOVERY_SERVER_ADDR", "SPRING_CLOUD_NACOS_DISCOVERY_SERVERADDR",
                  "SPRING_CLOUD_NACOS_SERVER_ADDR", "SPRING_CLOUD_NACOS_SERVERADDR", "NACOS_SERVER_ADDR",
                  "NACOS_ADDR")
NACOS_CONFIG_FILES = ("bootstrap.yml", "bootstrap.yaml", "application.yml", "application.yaml")
PLACEHOLDER = re.compile(r"\$\{")


class ImportError_(ValueError):
    """The objects given cannot be read as one app (no Deployment, a Deployment not found)."""


@dataclass(frozen=True)
class AppObjects:
    """The live objects that make up one app, found from its Deployment."""

    deployment: dict[str, Any]
    services: tuple[dict[str, Any], ...] = ()
    ingresses: tuple[dict[str, Any], ...] = ()
    configmaps: tuple[dict[str, Any], ...] = ()
    hpas: tuple[dict[str, Any], ...] = ()

    def all(self) -> list[dict[str, Any]]:
        return [self.deployment, *self.services, *self.ingresses, *self.configmaps, *self.hpas]


@dataclass(frozen=True)
class Imported:
    app: dict[str, Any]  # the AppRelease as YAML would show it
    notes: tuple[str, ...] = ()
    objects: AppObjects | None = None


@dataclass
class _Notes:
    items: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        if text not in self.items:
            self.items.append(text)


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _name(obj: dict[str, Any]) -> str:
    return str(_meta(obj).get("name") or "")


def selects(selector: dict[str, str], pod_labels: dict[str, str]) -> bool:
    """A Service selector (or matchLabels) selects pods with these labels."""
    return bool(selector) and all(pod_labels.get(k) == v for k, v in selector.items())


def template_labels(deployment: dict[str, Any]) -> dict[str, str]:
    return dict(((deployment.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {})


def match_labels(deployment: dict[str, Any]) -> dict[str, str]:
    return dict(((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})


def _ingress_backends(ingress: dict[str, Any]) -> set[str]:
    spec = ingress.get("spec") or {}
    names = set()
    default = ((spec.get("defaultBackend") or {}).get("service") or {}).get("name")
    if default:
        names.add(default)
    for rule in spec.get("rules") or []:
        for path in (rule.get("http") or {}).get("paths") or []:
            name = ((path.get("backend") or {}).get("service") or {}).get("name")
            if name:
                names.add(name)
    return names


def _mounted_configmaps(deployment: dict[str, Any]) -> set[str]:
    pod = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    return {v["configMap"]["name"] for v in pod.get("volumes") or [] if (v.get("configMap") or {}).get("name")}


def _scales(hpa: dict[str, Any], kind: str, name: str) -> bool:
    target = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
    return target.get("kind") == kind and target.get("name") == name


def collect(deployment: dict[str, Any], candidates: list[dict[str, Any]]) -> AppObjects:
    """From objects of the Deployment's namespace: the ones that belong to its app."""
    pod_labels = template_labels(deployment)
    services = tuple(o for o in candidates if o.get("kind") == "Service"
                     and selects((o.get("spec") or {}).get("selector") or {}, pod_labels))
    service_names = {_name(s) for s in services}
    ingresses = tuple(o for o in candidates if o.get("kind") == "Ingress" and _ingress_backends(o) & service_names)
    mounted = _mounted_configmaps(deployment)
    configmaps = tuple(o for o in candidates if o.get("kind") == "ConfigMap" and _name(o) in mounted)
    hpas = tuple(o for o in candidates if o.get("kind") == "HorizontalPodAutoscaler"
                 and _scales(o, "Deployment", _name(deployment)))
    return AppObjects(deployment, services, ingresses, configmaps, hpas)


def _without_defaults(values: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if not (k in defaults and defaults[k] == v)}


def _user_annotations(annotations: dict[str, str] | None) -> dict[str, str]:
    return {k: v for k, v in (annotations or {}).items()
            if k not in _TOOL_ANNOTATIONS and not k.startswith(_TOOL_ANNOTATION_PREFIXES)}


def _user_labels(values: dict[str, str] | None) -> dict[str, str]:
    reserved = (L.NAME, L.INSTANCE, L.MANAGED_BY, L.VERSION)
    return {k: v for k, v in (values or {}).items() if k not in reserved and not k.startswith("apprelease.io/")}


def _probe(probe: dict[str, Any] | None) -> dict[str, Any] | None:
    if not probe:
        return None
    result = _without_defaults(probe, _PROBE_DEFAULTS)
    for handler in ("httpGet", "tcpSocket"):
        if handler in result and result[handler].get("scheme") == "HTTP":
            result[handler] = {k: v for k, v in result[handler].items() if k != "scheme"}
    return result


def _port_names(ports: list[dict[str, Any]]) -> list[str]:
    names = []
    for index, port in enumerate(ports):
        name = port.get("name") or ("http" if index == 0 else f"port-{port.get('containerPort')}")
        names.append(str(name))
    return names


def _service_port_for(services: tuple[dict[str, Any], ...], container_port: int, name: str | None) -> int | None:
    for svc in services:
        for port in (svc.get("spec") or {}).get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            if target == container_port or (name is not None and target == name):
                return int(port["port"])
    return None


@dataclass
class _ConfigImport:
    config: dict[str, Any] | None
    kept_volumes: set[str]  # volume names left in podTemplate
    kept_mounts: list[dict[str, Any]]


def _config_files(
    pod: dict[str, Any], container: dict[str, Any], configmaps: tuple[dict[str, Any], ...], notes: _Notes,
) -> _ConfigImport:
    """The first ConfigMap volume whose mounts spec.config can express becomes spec.config;
    every other volume stays as it is in podTemplate."""
    by_name = {_name(c): c for c in configmaps}
    volumes = {v.get("name"): v for v in pod.get("volumes") or []}
    mounts = list(container.get("volumeMounts") or [])
    chosen: dict[str, Any] | None = None
    chosen_volume: str | None = None
    for volume_name, volume in volumes.items():
        source = volume.get("configMap")
        if not source:
            continue
        mine = [m for m in mounts if m.get("name") == volume_name]
        configmap = by_name.get(source.get("name"))
        if configmap is None:
            notes.add(f"ConfigMap {source.get('name')} was not read: volume {volume_name} stays in podTemplate")
            continue
        expressed = _express_mounts(mine, source, configmap, notes)
        if expressed is not None and chosen is not None:
            notes.add(f"ConfigMap {source.get('name')} stays in podTemplate: spec.config holds one ConfigMap")
        elif expressed is not None:
            chosen, chosen_volume = expressed, volume_name
    kept_mounts = [m for m in mounts if m.get("name") != chosen_volume]
    kept_volumes = {n for n in volumes if n != chosen_volume}
    return _ConfigImport(chosen, kept_volumes, kept_mounts)


def _express_mounts(
    mounts: list[dict[str, Any]], source: dict[str, Any], configmap: dict[str, Any], notes: _Notes,
) -> dict[str, Any] | None:
    name = _name(configmap)
    data = dict(configmap.get("data") or {})
    if configmap.get("binaryData"):
        notes.add(f"ConfigMap {name} has binaryData: spec.config holds text only; it stays in podTemplate")
        return None
    if not mounts:
        return None
    items = source.get("items")
    if items and any(i.get("key") != i.get("path") for i in items):
        notes.add(f"ConfigMap {name} renames keys (items key != path): it stays in podTemplate")
        return None
    if source.get("defaultMode") not in (None, 420) or any(m.get("subPathExpr") or m.get("mountPropagation")
                                                          for m in mounts):
        notes.add(f"ConfigMap {name}'s mode or mount options have no field: it stays in podTemplate")
        return None
    if all(m.get("subPath") for m in mounts):
        directories = {m["mountPath"].rstrip("/").rsplit("/", 1)[0] or "/" for m in mounts}
        fits = len(directories) == 1 and all(
            m["mountPath"].rstrip("/").rsplit("/", 1)[1] == m["subPath"] and m["subPath"] in data for m in mounts
        )
        if not fits:
            notes.add(f"ConfigMap {name}: subPath mounts at other file names stay in podTemplate")
            return None
        files = {m["subPath"]: data[m["subPath"]] for m in mounts}
        unused = sorted(set(data) - set(files))
        if unused:
            notes.add(f"ConfigMap {name}: keys {', '.join(unused)} are not mounted and are left out")
        return {"mountPath": directories.pop(), "subPath": True, "files": files}
    if len(mounts) == 1 and not mounts[0].get("subPath"):
        keys = [i["key"] for i in items] if items else sorted(data)
        return {"mountPath": mounts[0]["mountPath"], "files": {k: data[k] for k in keys if k in data}}
    notes.add(f"ConfigMap {name} is mounted in more than one way: it stays in podTemplate")
    return None


def _lookup(doc: Any, dotted: str) -> Any:
    """A Spring property from YAML written nested (spring: cloud: ...) or flat (spring.cloud...: )."""
    if not isinstance(doc, dict):
        return None
    if dotted in doc:
        return doc[dotted]
    head, _, rest = dotted.partition(".")
    if not rest:
        return doc.get(head)
    for key in doc:
        if isinstance(key, str) and dotted.startswith(key + "."):
            found = _lookup(doc[key], dotted[len(key) + 1:])
            if found is not None:
                return found
    return None


_NACOS_PROPERTIES = (
    ("serverAddr", ("spring.cloud.nacos.discovery.server-addr", "spring.cloud.nacos.discovery.serverAddr",
                    "spring.cloud.nacos.server-addr")),
    ("namespace", ("spring.cloud.nacos.discovery.namespace",)),
    ("group", ("spring.cloud.nacos.discovery.group",)),
    ("cluster", ("spring.cloud.nacos.discovery.cluster-name",)),
    ("serviceName", ("spring.cloud.nacos.discovery.service", "spring.application.name")),
)


def _nacos_from_text(text: str) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    found: dict[str, Any] = {}
    for wire, properties in _NACOS_PROPERTIES:
        for dotted in properties:
            value = _lookup(doc, dotted)
            if value is not None and not isinstance(value, dict | list) and str(value):
                found[wire] = str(value)
                break
    return found


def _nacos(env: list[dict[str, Any]], files: dict[str, str], app_name: str, notes: _Notes) -> dict[str, Any] | None:
    found: dict[str, Any] = {}
    for file_name in NACOS_CONFIG_FILES:
        if file_name in files:
            for key, value in _nacos_from_text(files[file_name]).items():
                found.setdefault(key, value)
    literal = {e["name"]: e["value"] for e in env if isinstance(e.get("value"), str)}
    for name in NACOS_ADDR_ENV:
        if name in literal:
            found["serverAddr"] = literal[name]
            break
    if "serverAddr" not in found:
        return None
    if any(PLACEHOLDER.search(str(v)) for v in found.values()):
        notes.add("the Nacos settings use ${...} placeholders: registry.nacos left out, set it by hand")
        return None
    found.setdefault("serviceName", app_name)
    return found


def _strategy(deployment_spec: dict[str, Any]) -> dict[str, Any]:
    strategy = deployment_spec.get("strategy") or {}
    if strategy.get("type") == "Recreate":
        return {"recreate": {}}
    rolling = strategy.get("rollingUpdate") or {}
    values = {k: rolling[k] for k in ("maxSurge", "maxUnavailable") if k in rolling}
    if values in ({}, {"maxSurge": "25%", "maxUnavailable": "25%"}):
        return {}
    return {"rolling": values}


def _service_spec(services: tuple[dict[str, Any], ...], app_name: str, notes: _Notes) -> dict[str, Any]:
    service: dict[str, Any] = {}
    main = next((s for s in services if _name(s) == service_name(app_name)), None)
    for other in services:
        if other is not main:
            notes.add(f"Service {_name(other)} also selects the pods: not part of the AppRelease (left as it is)")
    if main is None:
        if services:
            notes.add(f"no Service is named {app_name}: the AppRelease creates one")
        return service
    spec = main.get("spec") or {}
    if spec.get("type") in ("NodePort", "LoadBalancer"):
        service["type"] = spec["type"]
        node_port = ((spec.get("ports") or [{}])[0]).get("nodePort")
        if node_port:
            service["nodePort"] = node_port
    elif spec.get("type") not in (None, "ClusterIP"):
        notes.add(f"Service {_name(main)} has type {spec.get('type')}, which has no field")
    annotations = _user_annotations(_meta(main).get("annotations"))
    if annotations:
        service["annotations"] = annotations
    user_labels = _user_labels(_meta(main).get("labels"))
    if user_labels:
        service["labels"] = user_labels
    for key in ("sessionAffinity", "externalTrafficPolicy", "loadBalancerSourceRanges", "externalIPs"):
        if key in spec and spec[key] not in ("None", "Cluster", []):
            notes.add(f"Service {_name(main)}: spec.{key} has no field in the AppRelease")
    return service


def _ingress_spec(ingresses: tuple[dict[str, Any], ...], app_name: str, service_port: int | None,
                  notes: _Notes) -> dict[str, Any] | None:
    main = next((i for i in ingresses if _name(i) == app_name), ingresses[0] if ingresses else None)
    for other in ingresses:
        if other is not main:
            notes.add(f"Ingress {_name(other)} also routes to the app: not part of the AppRelease (left as it is)")
    if main is None:
        return None
    if _name(main) != app_name:
        notes.add(f"Ingress {_name(main)} becomes Ingress {app_name} (the AppRelease names it after the app)")
    spec = main.get("spec") or {}
    rules: list[dict[str, Any]] = []
    for rule in spec.get("rules") or []:
        paths = []
        for path in (rule.get("http") or {}).get("paths") or []:
            entry: dict[str, Any] = {"path": path.get("path") or "/", "pathType": path.get("pathType") or "Prefix"}
            port = ((path.get("backend") or {}).get("service") or {}).get("port") or {}
            chosen = port.get("name") or port.get("number")
            if chosen is not None and chosen != service_port:
                entry["port"] = chosen
            paths.append(entry)
        if paths:
            rules.append({**({"host": rule["host"]} if rule.get("host") else {}), "paths": paths})
    ingress: dict[str, Any] = {}
    if len(rules) == 1 and len(rules[0]["paths"]) == 1:
        only = rules[0]["paths"][0]
        if rules[0].get("host"):
            ingress["host"] = rules[0]["host"]
        ingress["path"] = only["path"]
        if only["pathType"] != "Prefix":
            ingress["pathType"] = only["pathType"]
        if "port" in only:
            ingress["port"] = only["port"]
    elif rules:
        ingress["rules"] = rules
    if spec.get("ingressClassName"):
        ingress["className"] = spec["ingressClassName"]
    annotations = _user_annotations(_meta(main).get("annotations"))
    if annotations.get("kubernetes.io/ingress.class") and "className" not in ingress:
        ingress["className"] = annotations["kubernetes.io/ingress.class"]
    if annotations:
        ingress["annotations"] = annotations
    if spec.get("tls"):
        ingress["tls"] = [{k: v for k, v in t.items() if k in ("hosts", "secretName")} for t in spec["tls"]]
    if spec.get("defaultBackend"):
        notes.add(f"Ingress {_name(main)}: defaultBackend has no field in the AppRelease")
    return ingress


def _main_container(deployment: dict[str, Any]) -> dict[str, Any]:
    pod = deployment["spec"]["template"].get("spec") or {}
    containers = pod.get("containers") or []
    if not containers:
        raise ImportError_(f"Deployment {_name(deployment)} has no containers")
    return next((c for c in containers if c.get("name") == _name(deployment)), containers[0])


def import_app(objects: AppObjects) -> Imported:
    """The AppRelease that renders these objects, and what it could not express."""
    deployment = objects.deployment
    name = _name(deployment)
    notes = _Notes()
    dspec = deployment.get("spec") or {}
    template = copy.deepcopy(dspec.get("template") or {})
    pod = template.get("spec") or {}
    main = _main_container({"metadata": _meta(deployment), "spec": {"template": template}})
    if main.get("name") != name:
        notes.add(f"container {main.get('name')} is renamed {name} (the AppRelease names the main container after the app)")
    spec: dict[str, Any] = {"image": main.get("image", "")}
    if main.get("imagePullPolicy"):
        spec["imagePullPolicy"] = main["imagePullPolicy"]
    for key in ("command", "args"):
        if main.get(key):
            spec[key] = list(main[key])
    spec["replicas"] = dspec.get("replicas", 1)
    ports = list(main.get("ports") or [])
    names = _port_names(ports)
    wire_ports = []
    for port, port_name in zip(ports, names, strict=True):
        entry: dict[str, Any] = {"name": port_name, "containerPort": port["containerPort"]}
        if port.get("protocol") not in (None, "TCP"):
            entry["protocol"] = port["protocol"]
        svc_port = _service_port_for(objects.services, port["containerPort"], port.get("name"))
        if svc_port is not None and svc_port != port["containerPort"]:
            entry["servicePort"] = svc_port
        wire_ports.append(entry)
        for extra in ("hostPort", "hostIP"):
            if port.get(extra):
                notes.add(f"port {port['containerPort']}: {extra} has no field in the AppRelease")
    primary_service_port = None
    if len(wire_ports) == 1 and wire_ports[0]["name"] == "http" and "protocol" not in wire_ports[0]:
        spec["port"] = wire_ports[0]["containerPort"]
        primary_service_port = wire_ports[0].get("servicePort", spec["port"])
    elif wire_ports:
        spec["ports"] = wire_ports
        primary_service_port = wire_ports[0].get("servicePort", wire_ports[0]["containerPort"])
    env = [copy.deepcopy(e) for e in main.get("env") or []]
    if env:
        spec["env"] = env
    if main.get("envFrom"):
        spec["envFrom"] = copy.deepcopy(main["envFrom"])
    config = _config_files(pod, main, objects.configmaps, notes)
    if config.config is not None:
        spec["config"] = config.config
    if main.get("resources"):
        spec["resources"] = copy.deepcopy(main["resources"])
    for key in ("readinessProbe", "livenessProbe", "startupProbe"):
        probe = _probe(main.get(key))
        if probe:
            spec[key] = probe
    if "readinessProbe" not in spec and ports:
        notes.add("no readinessProbe: the AppRelease adds a TCP probe on the first port")
    service = _service_spec(objects.services, name, notes)
    if "port" in spec and primary_service_port != spec["port"]:
        service["port"] = primary_service_port
    if service:
        spec["service"] = service
    ingress = _ingress_spec(objects.ingresses, name, primary_service_port, notes)
    if ingress is not None:
        spec["ingress"] = ingress
    strategy = _strategy(dspec)
    if strategy:
        spec["strategy"] = strategy
    for key, default in (("minReadySeconds", 0), ("progressDeadlineSeconds", 600)):
        if dspec.get(key, default) != default:
            spec[key] = dspec[key]
    files = (config.config or {}).get("files") or {}
    nacos = _nacos(env, files, name, notes)
    if nacos is not None:
        spec["registry"] = {"nacos": nacos}
    pod_template = _pod_template(template, main, config, name, notes)
    if pod_template:
        spec["podTemplate"] = pod_template
    for hpa in objects.hpas:
        notes.add(f"HorizontalPodAutoscaler {_name(hpa)} scales the Deployment: point its scaleTargetRef at"
                  f" AppRelease {name} (adopt does)")
    meta: dict[str, Any] = {"name": name}
    if _meta(deployment).get("namespace"):
        meta["namespace"] = _meta(deployment)["namespace"]
    app = {"apiVersion": API_VERSION, "kind": KIND, "metadata": meta, "spec": spec}
    AppRelease.model_validate(app)  # what we produce always passes our own validation
    return Imported(app, tuple(notes.items), objects)


def _pod_template(template: dict[str, Any], main: dict[str, Any], config: _ConfigImport, app_name: str,
                  notes: _Notes) -> dict[str, Any]:
    """What is left of the pod template once the fields with a place of their own are out."""
    pod = _without_defaults(dict(template.get("spec") or {}), _POD_SPEC_DEFAULTS)
    result_spec: dict[str, Any] = {}
    containers = []
    for container in pod.pop("containers", []):
        if container is main:
            rest = _without_defaults({k: v for k, v in container.items() if k not in _CONTAINER_OWNED},
                                     _CONTAINER_DEFAULTS)
            if config.kept_mounts:
                rest["volumeMounts"] = config.kept_mounts
            if rest:
                containers.append({"name": app_name, **rest})
        else:
            containers.append(_without_defaults(container, _CONTAINER_DEFAULTS))
    if containers:
        result_spec["containers"] = containers
    volumes = [v for v in pod.pop("volumes", []) or [] if v.get("name") in config.kept_volumes]
    if volumes:
        result_spec["volumes"] = volumes
    result_spec.update(pod)
    result: dict[str, Any] = {}
    metadata = template.get("metadata") or {}
    extra_labels = _user_labels(metadata.get("labels"))
    annotations = _user_annotations(metadata.get("annotations"))
    annotations.pop(L.RESTARTED_AT, None)
    if extra_labels or annotations:
        result["metadata"] = {}
        if extra_labels:
            result["metadata"]["labels"] = extra_labels
        if annotations:
            result["metadata"]["annotations"] = annotations
    if result_spec:
        result["spec"] = result_spec
    return result


def find_deployment(objects: list[dict[str, Any]], name: str | None = None) -> dict[str, Any]:
    deployments = [o for o in objects if o.get("kind") == "Deployment"]
    if name is not None:
        deployments = [d for d in deployments if _name(d) == name]
    if not deployments:
        raise ImportError_("no Deployment" + (f" named {name}" if name else "") + " among the objects given")
    if len(deployments) > 1:
        raise ImportError_("more than one Deployment given: name one ("
                           + ", ".join(sorted(_name(d) for d in deployments)) + ")")
    return deployments[0]
