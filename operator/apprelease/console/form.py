"""The deploy form (Rancher parity) ⇄ an AppRelease. Pure.

The form edits the fields a Rancher user knows (image, port, replicas, env, config files,
resources, readiness probe, Service, Ingress, strategy, Nacos); editing an existing app
starts from its live spec and replaces only those fields, so everything else in the spec
(podTemplate, command, extra ports...) is kept as it is. Env entries are literal values or
references to a Secret / ConfigMap key: a Secret's value never passes through the console.
Validation is the apiserver's (a server-side dry run); its messages are put next to the
field they name (``field_for``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..api.base import duration_text
from ..api.spec import API_VERSION, KIND

ENV_SOURCES = ("value", "secret", "configmap")
PROBES = ("none", "http", "tcp", "custom")
STRATEGIES = ("rolling", "recreate", "canary", "blueGreen")
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
MERGE = "application/merge-patch+json"


@dataclass
class EnvRow:
    name: str = ""
    source: str = "value"
    value: str = ""
    ref_name: str = ""
    ref_key: str = ""

    @property
    def blank(self) -> bool:
        return not (self.name or self.value or self.ref_name or self.ref_key) and self.source == "value"


@dataclass
class FileRow:
    name: str = ""
    content: str = ""

    @property
    def blank(self) -> bool:
        return not (self.name or self.content)


@dataclass
class DeployForm:
    name: str = ""
    namespace: str = "default"
    image: str = ""
    port: str = "8080"
    replicas: str = "1"
    env: list[EnvRow] = field(default_factory=list)
    config_mount: str = ""
    files: list[FileRow] = field(default_factory=list)
    cpu_request: str = ""
    memory_request: str = ""
    cpu_limit: str = ""
    memory_limit: str = ""
    probe: str = "tcp"
    probe_path: str = "/"
    probe_port: str = ""
    service_type: str = "ClusterIP"
    service_port: str = ""
    ingress_host: str = ""
    ingress_path: str = "/"
    ingress_class: str = ""
    strategy: str = "rolling"
    canary_steps: str = "20, pause, 50, pause 30s"
    nacos_server: str = ""
    nacos_namespace: str = "public"
    nacos_group: str = "DEFAULT_GROUP"
    nacos_service: str = ""
    resource_version: str = ""  # set when editing: the update fails if the app changed meanwhile
    notes: list[str] = field(default_factory=list)  # what the form keeps without showing it

    @property
    def editing(self) -> bool:
        return bool(self.resource_version)


_SCALARS = [f for f in DeployForm.__dataclass_fields__ if f not in ("env", "files", "notes")]
_FIELD_NAMES = {name: name.replace("_", "-") for name in _SCALARS}


def parse(data: Mapping[str, str]) -> DeployForm:
    """Form data (as posted) → DeployForm; blank env/file rows are dropped, the rest renumbered."""
    form = DeployForm()
    for name, html in _FIELD_NAMES.items():
        if html in data:
            setattr(form, name, str(data[html]).strip())
    # Config files keep their exact text (indentation and trailing newline matter).
    for i in range(_rows(data, "env")):
        env = EnvRow(*(str(data.get(f"env-{i}-{part}", "")).strip()
                       for part in ("name", "source", "value", "ref-name", "ref-key")))
        env.source = env.source if env.source in ENV_SOURCES else "value"
        if not env.blank:
            form.env.append(env)
    for i in range(_rows(data, "file")):
        content = str(data.get(f"file-{i}-content", "")).replace("\r\n", "\n")
        file = FileRow(str(data.get(f"file-{i}-name", "")).strip(), content)
        if not file.blank:
            form.files.append(file)
    return form


def _rows(data: Mapping[str, str], prefix: str) -> int:
    indices = [int(m.group(1)) for key in data if (m := re.fullmatch(rf"{prefix}-(\d+)-\w+(-\w+)?", key))]
    return max(indices, default=-1) + 1


def field_name(attribute: str) -> str:
    return _FIELD_NAMES[attribute]


# Form → AppRelease ---------------------------------------------------------------------------


class FormErrors(dict[str, str]):
    """field name → message, for the fields the form itself could not read."""


def _int(value: str, field_html: str, errors: FormErrors) -> int | None:
    if value == "":
        return None
    try:
        return int(value)
    except ValueError:
        errors[field_html] = f"{value!r} is not a whole number"
        return None


def parse_steps(text: str, live: list[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """``20, pause, 50, pause 30s`` → canary steps; ValueError names the bad part. Each
    ``analysis`` keeps the live app's analysis step of the same rank (its templates and args
    are written in YAML, not here)."""
    result: list[dict[str, Any]] = []
    analyses = [dict(step) for step in live or [] if step.get("analysis")]
    for part in re.split(r"[,\n;]+", text):
        token = part.strip().lower()
        if not token:
            continue
        if re.fullmatch(r"\d+%?", token):
            result.append({"setWeight": int(token.rstrip("%"))})
        elif token == "pause":
            result.append({"pause": {}})
        elif token == "analysis":
            if not analyses:
                raise ValueError("'analysis': an analysis step (its templates and args) is added in YAML;"
                                 " here it can only be kept or moved")
            result.append(analyses.pop(0))
        elif m := re.fullmatch(r"pause\s+(\S+)", token):
            duration = m.group(1)  # integer seconds or a duration string, as the API takes
            result.append({"pause": {"duration": int(duration) if duration.isdigit() else duration}})
        else:
            raise ValueError(f"{part.strip()!r}: write a weight (20 or 20%), pause, or pause 30s")
    return result


def format_steps(steps: list[Mapping[str, Any]]) -> str:
    parts = []
    for step in steps:
        if step.get("setWeight") is not None:
            parts.append(str(step["setWeight"]))
        elif step.get("analysis"):
            parts.append("analysis")
        else:
            duration = (step.get("pause") or {}).get("duration")
            parts.append(f"pause {duration_text(duration)}" if duration is not None else "pause")
    return ", ".join(parts)


def _env(rows: list[EnvRow]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    for row in rows:
        if row.blank:
            continue
        if row.source == "value":
            result.append({"name": row.name, "value": row.value})
        else:
            ref = "secretKeyRef" if row.source == "secret" else "configMapKeyRef"
            result.append({"name": row.name, "valueFrom": {ref: {"name": row.ref_name, "key": row.ref_key}}})
    return result


def _field_reference(entry: Mapping[str, Any]) -> bool:
    source = entry.get("valueFrom") or {}
    return "fieldRef" in source or "resourceFieldRef" in source


def _put(spec: dict[str, Any], key: str, value: Any) -> None:
    if value is None or value == {} or value == []:
        spec.pop(key, None)
    else:
        spec[key] = value


def strategy_kind(strategy: Mapping[str, Any]) -> str:
    """Which strategy a spec.strategy sets (its one key), "rolling" when none."""
    return next((kind for kind, value in strategy.items() if value is not None), "rolling")


def strategy_choices(form: DeployForm) -> tuple[str, ...]:
    """The strategy select's options: the known kinds, and the app's own if it is another."""
    return STRATEGIES if form.strategy in STRATEGIES else (*STRATEGIES, form.strategy)


def _strategy(form: DeployForm, live: Mapping[str, Any], errors: FormErrors) -> dict[str, Any]:
    """The strategy the form chose. The live app's own strategy object is kept as it is
    (every field of it, including ones this form does not show or know); only the canary
    steps come from the form. Another kind starts from that kind's defaults."""
    kind = form.strategy or "rolling"
    strategy: dict[str, Any] = (copy.deepcopy(dict(live)) if kind == strategy_kind(live)
                                else {} if kind == "rolling" else {kind: {}})
    if kind == "canary":
        canary = dict(strategy.get("canary") or {})
        try:
            canary["steps"] = parse_steps(form.canary_steps, list(canary.get("steps") or []))
        except ValueError as exc:
            errors["canary-steps"] = str(exc)
        strategy["canary"] = canary
    return strategy


def to_app_release(form: DeployForm, base: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], FormErrors]:
    """The AppRelease the form describes (on top of ``base``, the live object, when editing)."""
    errors = FormErrors()
    base_spec: dict[str, Any] = copy.deepcopy(dict((base or {}).get("spec") or {}))
    spec = base_spec
    _put(spec, "image", form.image or None)
    replicas = _int(form.replicas, "replicas", errors)
    _put(spec, "replicas", replicas)
    if not spec.get("ports"):
        _put(spec, "port", _int(form.port, "port", errors))
    # Entries the form cannot show (fieldRef, resourceFieldRef) stay as they were.
    named = {row.name for row in form.env}
    kept = [e for e in base_spec.get("env") or [] if _field_reference(e) and e["name"] not in named]
    _put(spec, "env", _env(form.env) + kept)

    config = dict(spec.get("config") or {})
    config.pop("mountPath", None)
    config.pop("files", None)
    if form.config_mount:
        config["mountPath"] = form.config_mount
    if any(not row.blank for row in form.files):
        config["files"] = {row.name: row.content for row in form.files if not row.blank}
    _put(spec, "config", config or None)

    resources: dict[str, Any] = {}
    for kind, cpu, memory in (("requests", form.cpu_request, form.memory_request),
                              ("limits", form.cpu_limit, form.memory_limit)):
        values = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
        if values:
            resources[kind] = values
    _put(spec, "resources", resources or None)

    if form.probe != "custom":
        port_ref: int | str = spec.get("port") or "http"
        if form.probe_port.isdigit():
            port_ref = int(form.probe_port)
        elif form.probe_port:
            port_ref = form.probe_port  # a port name
        probe = {"http": {"httpGet": {"path": form.probe_path or "/", "port": port_ref}},
                 "tcp": {"tcpSocket": {"port": port_ref}}}.get(form.probe)
        _put(spec, "readinessProbe", probe)

    service = dict(spec.get("service") or {})
    service_type = form.service_type if form.service_type in SERVICE_TYPES else "ClusterIP"
    if service_type != "ClusterIP" or "type" in service:  # ClusterIP is the default: unwritten
        service["type"] = service_type
    service.pop("port", None)
    service_port = _int(form.service_port, "service-port", errors)
    if service_port is not None:
        service["port"] = service_port
    _put(spec, "service", service or None)

    ingress = dict(spec.get("ingress") or {})
    if not ingress.get("rules"):
        for key in ("host", "path", "className"):
            ingress.pop(key, None)
        if form.ingress_host:
            ingress["host"] = form.ingress_host
            ingress["path"] = form.ingress_path or "/"
            if form.ingress_class:
                ingress["className"] = form.ingress_class
        _put(spec, "ingress", ingress if form.ingress_host else None)

    strategy = _strategy(form, base_spec.get("strategy") or {}, errors)
    _put(spec, "strategy", strategy or None)

    registry = dict(spec.get("registry") or {})
    if form.nacos_server:
        nacos = dict(registry.get("nacos") or {})
        nacos.update(serverAddr=form.nacos_server, namespace=form.nacos_namespace or "public",
                     group=form.nacos_group or "DEFAULT_GROUP", serviceName=form.nacos_service or form.name)
        registry["nacos"] = nacos
    else:
        registry.pop("nacos", None)
    _put(spec, "registry", registry or None)

    metadata: dict[str, Any] = {"name": form.name, "namespace": form.namespace}
    if base:
        metadata = copy.deepcopy(dict(base.get("metadata") or {}))
        for key in ("managedFields", "creationTimestamp", "generation", "uid"):
            metadata.pop(key, None)
        if form.resource_version:
            metadata["resourceVersion"] = form.resource_version
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}, errors


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The RFC 7386 merge patch that turns ``old`` into ``new`` (null removes a key)."""
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            inner = merge_patch(before, value)
            if inner:
                patch[key] = inner
        elif value != before or key not in old:
            patch[key] = copy.deepcopy(value)
    return patch


# AppRelease → form ---------------------------------------------------------------------------


def from_app_release(app: Mapping[str, Any]) -> DeployForm:
    meta, spec = app["metadata"], app.get("spec") or {}
    form = DeployForm(name=meta["name"], namespace=meta.get("namespace", "default"),
                      image=str(spec.get("image", "")), replicas=str(spec.get("replicas", 1)),
                      port=str(spec.get("port") or ""), resource_version=str(meta.get("resourceVersion", "")))
    if spec.get("ports"):
        form.notes.append(f"{len(spec['ports'])} named ports (kept as they are)")
    for entry in spec.get("env") or []:
        source = entry.get("valueFrom") or {}
        if "value" in entry or not source:
            form.env.append(EnvRow(entry["name"], "value", str(entry.get("value", ""))))
        elif "secretKeyRef" in source or "configMapKeyRef" in source:
            kind = "secret" if "secretKeyRef" in source else "configmap"
            ref = source.get("secretKeyRef") or source.get("configMapKeyRef") or {}
            form.env.append(EnvRow(entry["name"], kind, "", ref.get("name", ""), ref.get("key", "")))
        else:
            form.notes.append(f"env {entry['name']} comes from a field reference (kept as it is)")
    config = spec.get("config") or {}
    form.config_mount = str(config.get("mountPath", ""))
    form.files = [FileRow(name, content) for name, content in (config.get("files") or {}).items()]
    resources = spec.get("resources") or {}
    form.cpu_request = str((resources.get("requests") or {}).get("cpu", ""))
    form.memory_request = str((resources.get("requests") or {}).get("memory", ""))
    form.cpu_limit = str((resources.get("limits") or {}).get("cpu", ""))
    form.memory_limit = str((resources.get("limits") or {}).get("memory", ""))
    probe = spec.get("readinessProbe")
    if not probe:
        form.probe, form.probe_port = "none", ""
    elif "httpGet" in probe:
        form.probe, form.probe_path = "http", str(probe["httpGet"].get("path", "/"))
        form.probe_port = str(probe["httpGet"].get("port", ""))
    elif "tcpSocket" in probe:
        form.probe, form.probe_port = "tcp", str(probe["tcpSocket"].get("port", ""))
    else:
        form.probe = "custom"
    service = spec.get("service") or {}
    form.service_type, form.service_port = service.get("type", "ClusterIP"), str(service.get("port", ""))
    ingress = spec.get("ingress") or {}
    if ingress.get("rules"):
        form.notes.append("Ingress rules (kept as they are)")
    form.ingress_host = str(ingress.get("host", ""))
    form.ingress_path = str(ingress.get("path", "/"))
    form.ingress_class = str(ingress.get("className", ""))
    strategy = spec.get("strategy") or {}
    form.strategy = strategy_kind(strategy)
    if form.strategy == "canary":
        form.canary_steps = format_steps((strategy["canary"] or {}).get("steps") or [])
    elif form.strategy not in STRATEGIES:
        form.notes.append(f"strategy {form.strategy} (kept as it is)")
    nacos = (spec.get("registry") or {}).get("nacos") or {}
    form.nacos_server = str(nacos.get("serverAddr", ""))
    form.nacos_namespace = str(nacos.get("namespace", "public"))
    form.nacos_group = str(nacos.get("group", "DEFAULT_GROUP"))
    form.nacos_service = str(nacos.get("serviceName", ""))
    return form


# Apiserver messages → fields -----------------------------------------------------------------

_FIELDS = [
    (r"metadata\.name", "name"),
    (r"metadata\.namespace", "namespace"),
    (r"spec\.image\b", "image"),
    (r"spec\.replicas", "replicas"),
    (r"spec\.ports?\b", "port"),
    (r"spec\.env\[(\d+)\]\.name", "env-{0}-name"),
    (r"spec\.env\[(\d+)\]\.value\b(?!From)", "env-{0}-value"),
    (r"spec\.env\[(\d+)\]", "env-{0}-ref-name"),
    (r"spec\.env\b", "env"),
    (r"spec\.config\.mountPath", "config-mount"),
    (r"spec\.config", "files"),
    (r"spec\.resources", "resources"),
    (r"spec\.readinessProbe", "probe"),
    (r"spec\.service\.port", "service-port"),
    (r"spec\.service", "service-type"),
    (r"spec\.ingress\.className", "ingress-class"),
    (r"spec\.ingress\.path", "ingress-path"),
    (r"spec\.ingress", "ingress-host"),
    (r"spec\.strategy\.canary", "canary-steps"),
    (r"spec\.strategy", "strategy"),  # blueGreen's fields, or more than one strategy set
    (r"spec\.registry\.nacos\.serverAddr", "nacos-server"),
    (r"spec\.registry\.nacos\.namespace", "nacos-namespace"),
    (r"spec\.registry\.nacos\.group", "nacos-group"),
    (r"spec\.registry\.nacos\.serviceName", "nacos-service"),
    (r"spec\.registry", "nacos-server"),
]


def field_for(path: str) -> str:
    """The form field an apiserver field path (``spec.env[2].name``) belongs to; "" if none."""
    for pattern, name in _FIELDS:
        m = re.match(pattern, path)
        if m:
            return name.format(*m.groups())
    return ""


def field_errors(causes: Sequence[Mapping[str, Any]], message: str) -> tuple[dict[str, str], list[str]]:
    """Apiserver causes → (messages by form field, messages for the top of the form)."""
    by_field: dict[str, str] = {}
    general: list[str] = []
    for cause in causes:
        path = str(cause.get("field") or "")
        text = str(cause.get("message") or "")
        name = field_for(path)
        if name:
            by_field[name] = (by_field[name] + "; " if name in by_field else "") + text
        else:
            general.append(f"{path}: {text}" if path else text)
    if not causes:
        general.append(message)
    return by_field, general
