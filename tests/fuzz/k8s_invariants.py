"""Offline checks of rendered children against rules the apiserver enforces on them.

Light on purpose (the server-side dry run in tests/e2e/test_fuzz_sample.py is the real
check): names, labels, annotations, port names, int32 fields, probe and resource rules,
ConfigMap keys and size, Ingress paths, as in Kubernetes' own validation
(apimachinery/pkg/util/validation, pkg/apis/*/validation). Plus one rule of ours: every
child keeps the labels the operator finds its children by.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from apprelease.render import labels as L

from .quantity import is_quantity, quantity_value

INT32_MAX = 2**31 - 1
DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
CONFIGMAP_KEY = re.compile(r"[-._a-zA-Z0-9]+")
HTTP_HEADER_NAME = re.compile(r"[-A-Za-z0-9]+")
TOTAL_ANNOTATION_BYTES = 256 * 1024
CONFIGMAP_BYTES = 1024 * 1024
STANDARD_CONTAINER_RESOURCES = {"cpu", "memory", "ephemeral-storage"}
INVALID_PATH_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F")
INVALID_PATH_SUFFIXES = ("/..", "/.")


def _v(field: str, rule: str, value: Any) -> str:
    """One violation: "field: rule = value" (the value last and cut short, for grouping)."""
    return f"{field}: {rule} = {value!r:.80}"


# Go's unicode.IsSpace: what strings.TrimSpace (the image check) trims. Not Python's isspace,
# which also counts the ASCII separators \x1c-\x1f.
GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
# pkg/apis/core/validation: what env[].valueFrom may point at.
FIELD_PATHS = {"metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels",
               "metadata.annotations", "spec.nodeName", "spec.serviceAccountName", "status.hostIP",
               "status.hostIPs", "status.podIP", "status.podIPs"}
FIELD_PATH_SUBSCRIPT = re.compile(r"metadata\.(labels|annotations)\['[^']+'\]")
RESOURCE_FIELDS = re.compile(r"(limits|requests)\.(cpu|memory|ephemeral-storage|hugepages-.+)")


def go_trim_space(value: str) -> str:
    return value.strip(GO_SPACE)


def is_subdomain(value: str) -> bool:
    return len(value) <= 253 and DNS1123_SUBDOMAIN.fullmatch(value) is not None


def is_qualified_name(value: str) -> bool:
    prefix, slash, name = value.rpartition("/")
    if slash and not (prefix and is_subdomain(prefix)):
        return False
    return 0 < len(name) <= 63 and QUALIFIED_NAME.fullmatch(name) is not None


def is_port_name(value: Any) -> bool:
    """IANA_SVC_NAME: what a container, Service or probe port may be named."""
    return (isinstance(value, str) and 0 < len(value) <= 15 and re.fullmatch(r"[-a-z0-9]+", value) is not None
            and re.search(r"[a-z]", value) is not None and "--" not in value
            and not value.startswith("-") and not value.endswith("-"))


def is_int32(value: Any, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= INT32_MAX


def _port_ref(value: Any) -> bool:
    return is_port_name(value) if isinstance(value, str) else is_int32(value, 1) and value <= 65535


def _metadata(obj: dict[str, Any], app: str, dns1035: bool) -> Iterator[str]:
    meta = obj["metadata"]
    name = meta["name"]
    valid = (len(name) <= 63 and DNS1035_LABEL.fullmatch(name) is not None) if dns1035 else is_subdomain(name)
    if not valid:
        yield _v("metadata.name", f"not a {'DNS-1035 label' if dns1035 else 'DNS-1123 subdomain'}", name)
    for key, value in (meta.get("labels") or {}).items():
        if not is_qualified_name(key):
            yield _v("metadata.labels", "key is not a qualified name", key)
        if not (len(value) <= 63 and LABEL_VALUE.fullmatch(value)):
            yield _v("metadata.labels", "value is not a label value", value)
    annotations = meta.get("annotations") or {}
    for key in annotations:
        if not is_qualified_name(key):
            yield _v("metadata.annotations", "key is not a qualified name", key)
    size = sum(len(k) + len(v) for k, v in annotations.items())
    if size > TOTAL_ANNOTATION_BYTES:
        yield _v("metadata.annotations", f"over {TOTAL_ANNOTATION_BYTES} bytes in total", size)
    mine = {L.INSTANCE: app, L.NAME: app, L.MANAGED_BY: L.MANAGER}
    changed = {k: v for k, v in mine.items() if (meta.get("labels") or {}).get(k) != v}
    if changed:
        yield _v("metadata.labels", "the operator's own labels (it finds children by them) overwritten", changed)


def _probe(probe: dict[str, Any], where: str, liveness_or_startup: bool) -> Iterator[str]:
    for field in ("initialDelaySeconds", "periodSeconds", "timeoutSeconds", "successThreshold",
                  "failureThreshold"):
        if field in probe and not is_int32(probe[field]):
            yield _v(f"{where}.{field}", "not an int32", probe[field])
    if liveness_or_startup and probe.get("successThreshold", 1) != 1:
        yield _v(f"{where}.successThreshold", "must be 1", probe.get("successThreshold"))
    for handler in ("httpGet", "tcpSocket"):
        if handler in probe and not _port_ref(probe[handler].get("port")):
            yield _v(f"{where}.{handler}.port", "not a port number or IANA_SVC_NAME", probe[handler].get("port"))
    for header in (probe.get("httpGet") or {}).get("httpHeaders") or []:
        if not HTTP_HEADER_NAME.fullmatch(header["name"]):
            yield _v(f"{where}.httpGet.httpHeaders.name", "not an HTTP header name", header["name"])


def _resources(resources: dict[str, Any], where: str) -> Iterator[str]:
    values: dict[str, dict[str, Any]] = {}
    for kind in ("requests", "limits"):
        for name, raw in (resources.get(kind) or {}).items():
            text = str(raw)
            if name not in STANDARD_CONTAINER_RESOURCES and not name.startswith("hugepages-") and (
                "/" not in name or not is_qualified_name(name)
            ):
                yield _v(f"{where}.{kind}", "key is not a standard or extended resource name", name)
            if not is_quantity(text):
                continue
            value = quantity_value(text)
            if value is not None and value < 0:
                yield _v(f"{where}.{kind}", "quantity is negative", text)
            values.setdefault(name, {})[kind] = value
    for name, pair in values.items():
        request, limit = pair.get("requests"), pair.get("limits")
        if request is not None and limit is not None and request > limit:
            yield _v(f"{where}.requests", "greater than the limit", name)


def _container(c: dict[str, Any], where: str) -> Iterator[str]:
    if not (len(c["name"]) <= 63 and DNS1123_LABEL.fullmatch(c["name"])):
        yield _v(f"{where}.name", "not a DNS-1123 label", c["name"])
    if not c.get("image") or c["image"] != go_trim_space(c["image"]):
        yield _v(f"{where}.image", "empty or surrounded by whitespace (Go's unicode.IsSpace)", c.get("image"))
    names = [p["name"] for p in c.get("ports") or [] if "name" in p]
    for name in names:
        if not is_port_name(name):
            yield _v(f"{where}.ports.name", "not an IANA_SVC_NAME", name)
    for env in c.get("env") or []:
        if not env["name"] or "=" in env["name"] or not env["name"].isascii() or not env["name"].isprintable():
            yield _v(f"{where}.env.name", "not printable ASCII without '='", env["name"])
        source = env.get("valueFrom") or {}
        ref = source.get("resourceFieldRef") or {}
        if "divisor" in ref and not is_quantity(str(ref["divisor"])):
            yield _v(f"{where}.env.valueFrom.resourceFieldRef.divisor", "not a quantity", ref["divisor"])
        if ref and not RESOURCE_FIELDS.fullmatch(ref["resource"]):
            yield _v(f"{where}.env.valueFrom.resourceFieldRef.resource", "not a supported resource", ref["resource"])
        field = source.get("fieldRef") or {}
        if field and not (field["fieldPath"] in FIELD_PATHS or FIELD_PATH_SUBSCRIPT.fullmatch(field["fieldPath"])):
            yield _v(f"{where}.env.valueFrom.fieldRef.fieldPath", "not a supported field path", field["fieldPath"])
        if field.get("apiVersion", "v1") != "v1":
            yield _v(f"{where}.env.valueFrom.fieldRef.apiVersion", "not v1", field["apiVersion"])
    for source in c.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "=" in prefix or not prefix.isascii() or not prefix.isprintable():
            yield _v(f"{where}.envFrom.prefix", "not printable ASCII without '='", prefix)
    for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
        if kind in c:
            yield from _probe(c[kind], f"{where}.{kind}", kind != "readinessProbe")
    yield from _resources(c.get("resources") or {}, f"{where}.resources")


def _deployment(obj: dict[str, Any]) -> Iterator[str]:
    spec = obj["spec"]
    for field in ("replicas", "progressDeadlineSeconds", "minReadySeconds"):
        if not is_int32(spec[field]):
            yield _v(f"spec.{field}", "not an int32", spec[field])
    if spec["progressDeadlineSeconds"] <= spec["minReadySeconds"]:
        yield _v("spec.progressDeadlineSeconds", "must be greater than minReadySeconds",
                 (spec["progressDeadlineSeconds"], spec["minReadySeconds"]))
    rolling = spec["strategy"].get("rollingUpdate") or {}
    for field in ("maxSurge", "maxUnavailable"):
        value = rolling.get(field)
        if isinstance(value, int) and not is_int32(value):
            yield _v(f"spec.strategy.rollingUpdate.{field}", "not an int32", value)
    unavailable = rolling.get("maxUnavailable")
    if isinstance(unavailable, str) and int(unavailable.rstrip("%")) > 100:
        yield _v("spec.strategy.rollingUpdate.maxUnavailable", "must not be greater than 100%", unavailable)
    if rolling and str(rolling.get("maxSurge")).rstrip("%") in ("0", "") and str(unavailable).rstrip("%") == "0":
        yield _v("spec.strategy.rollingUpdate", "maxUnavailable and maxSurge may not both be 0", rolling)
    for key, value in spec["template"]["metadata"]["labels"].items():
        if not is_qualified_name(key) or not (len(value) <= 63 and LABEL_VALUE.fullmatch(value)):
            yield _v("spec.template.metadata.labels", "not a valid label", f"{key}={value}")
    pod = spec["template"]["spec"]
    for index, container in enumerate(pod["containers"]):
        yield from _container(container, f"spec.template.spec.containers[{index}]")


def _service(obj: dict[str, Any]) -> Iterator[str]:
    ports = obj["spec"].get("ports") or []
    for port in ports:
        if not is_port_name(port["name"]):
            yield _v("spec.ports.name", "not an IANA_SVC_NAME", port["name"])
        if "nodePort" in port and not 30000 <= port["nodePort"] <= 32767:
            yield _v("spec.ports.nodePort", "outside the default range 30000-32767", port["nodePort"])


def _ingress(obj: dict[str, Any]) -> Iterator[str]:
    for rule in obj["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            text = path["path"]
            if path["pathType"] in ("Exact", "Prefix") and (
                any(s in text for s in INVALID_PATH_SEQUENCES) or text.endswith(INVALID_PATH_SUFFIXES)
            ):
                yield _v("spec.rules.http.paths.path", f"invalid for pathType {path['pathType']}", text)
            port = path["backend"]["service"]["port"]
            if "name" in port and not is_port_name(port["name"]):
                yield _v("spec.rules.http.paths.backend.service.port.name", "not an IANA_SVC_NAME", port["name"])


def _configmap(obj: dict[str, Any]) -> Iterator[str]:
    data = obj.get("data") or {}
    for key in data:
        if len(key) > 253 or not CONFIGMAP_KEY.fullmatch(key) or key in (".", "..") or key.startswith(".."):
            yield _v("data", "key is not a valid ConfigMap key", key)
    size = sum(len(k) + len(v.encode()) for k, v in data.items())
    if size > CONFIGMAP_BYTES:
        yield _v("data", f"over {CONFIGMAP_BYTES} bytes in total", size)


_BY_KIND = {"Deployment": _deployment, "Service": _service, "Ingress": _ingress, "ConfigMap": _configmap}


def violations(obj: dict[str, Any], app: str) -> list[str]:
    """Every rule above that ``obj`` breaks, as "Kind field: message"."""
    kind = obj["kind"]
    found = list(_metadata(obj, app, dns1035=kind == "Service"))
    found += _BY_KIND[kind](obj)
    return [f"{kind} {message}" for message in found]


def rule_of(violation: str) -> str:
    """The violation without its value: the same rule broken by two specs reads the same."""
    return re.sub(r"\[\d+\]", "[N]", violation.split(" = ", 1)[0])
