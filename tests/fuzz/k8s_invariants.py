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
from decimal import ROUND_CEILING, Decimal
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
# pkg/apis/core/validation: what env[].valueFrom may point at (labels and annotations only
# with a subscript, which must be a qualified name; spec.host is an old alias).
FIELD_PATHS = {"metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
               "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP",
               "status.podIPs", "spec.host"}
FIELD_PATH_SUBSCRIPT = re.compile(r"metadata\.(labels|annotations)\['(.+)'\]")
RESOURCE_FIELDS = re.compile(r"(limits|requests)\.(cpu|memory|ephemeral-storage|hugepages-.+)")
CPU_DIVISORS = {"1m": Decimal("0.001"), "1": Decimal(1)}
BYTE_DIVISORS = {f"1{s}": Decimal(10) ** (3 * i) for i, s in enumerate(["", "k", "M", "G", "T", "P", "E"])} | {
    f"1{s}i": Decimal(2) ** (10 * (i + 1)) for i, s in enumerate("KMGTPE")}


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


def _hugepage_size(name: str) -> Any:
    size = name.removeprefix("hugepages-")
    return quantity_value(size) if is_quantity(size) else None


def _resources(resources: dict[str, Any], where: str) -> Iterator[str]:
    """validateResourceRequirements with validateContainerResourceName."""
    values: dict[str, dict[str, Any]] = {}
    for kind in ("requests", "limits"):
        for name, raw in (resources.get(kind) or {}).items():
            text = str(raw)
            hugepages = name.startswith("hugepages-")
            if "/" not in name:
                if name not in STANDARD_CONTAINER_RESOURCES and not hugepages:
                    yield _v(f"{where}.{kind}", "key is not a standard resource for containers", name)
            elif not is_qualified_name(name) or ("kubernetes.io/" not in name and (
                    name.startswith("requests.") or not is_qualified_name("requests." + name))):
                yield _v(f"{where}.{kind}", "key is not a qualified extended resource name", name)
            if not is_quantity(text):
                continue
            value = quantity_value(text)
            if value < 0:
                yield _v(f"{where}.{kind}", "quantity is negative", text)
            if "/" in name and "kubernetes.io/" not in name and value != int(value):
                yield _v(f"{where}.{kind}", "extended resources must be whole numbers", f"{name}={text}")
            page = _hugepage_size(name) if hugepages else None
            if hugepages and not (page is not None and page > 0 and page == int(page)
                                  and value.to_integral_value(ROUND_CEILING) % page == 0):
                yield _v(f"{where}.{kind}", "not a whole multiple of the page size", f"{name}={text}")
            values.setdefault(name, {})[kind] = value
    for name, pair in values.items():
        request, limit = pair.get("requests"), pair.get("limits")
        overcommit = ("/" not in name or "kubernetes.io/" in name) and not name.startswith("hugepages-")
        if request is not None and limit is None and not overcommit:
            yield _v(f"{where}.limits", "a limit must be set for hugepages and extended resources", name)
        if request is not None and limit is not None and request != limit and not overcommit:
            yield _v(f"{where}.requests", "must equal the limit (hugepages, extended resources)", name)
        elif request is not None and limit is not None and request > limit:
            yield _v(f"{where}.requests", "greater than the limit", name)
    names = set(resources.get("requests") or {}) | set(resources.get("limits") or {})
    if any(n.startswith("hugepages-") for n in names) and not names & {"cpu", "memory"}:
        yield _v(where, "hugepages require cpu or memory", sorted(names))


def _divisor_ok(resource: str, divisor: Any) -> bool:
    text = str(divisor)
    if not is_quantity(text):
        return False
    value = quantity_value(text)
    if value == 0:
        return True  # an unset divisor
    allowed = CPU_DIVISORS if resource.endswith(".cpu") else BYTE_DIVISORS
    # The apiserver compares the canonical form (1000m is 1): same value, same family.
    binary = text.endswith("i")
    return text in allowed or any(v == value and k.endswith("i") == binary for k, v in allowed.items())


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
        if "divisor" in ref and not _divisor_ok(ref.get("resource", ""), ref["divisor"]):
            yield _v(f"{where}.env.valueFrom.resourceFieldRef.divisor", "not a supported divisor", ref["divisor"])
        if ref and not RESOURCE_FIELDS.fullmatch(ref["resource"]):
            yield _v(f"{where}.env.valueFrom.resourceFieldRef.resource", "not a supported resource", ref["resource"])
        field = source.get("fieldRef") or {}
        subscript = FIELD_PATH_SUBSCRIPT.fullmatch(field.get("fieldPath", ""))
        if field and not (field["fieldPath"] in FIELD_PATHS or (subscript and is_qualified_name(
                subscript.group(2).lower() if subscript.group(1) == "annotations" else subscript.group(2)))):
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
        # The node-port range is the apiserver's --service-node-port-range: a port outside it
        # is refused on the real apply (a dry run skips allocation), and the operator reports
        # that as Stalled ChildRejected naming the field (tests/e2e/test_fuzz_findings.py).


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


GATEWAY_GROUP = re.compile(r"|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
GATEWAY_KIND = re.compile(r"[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?")
GATEWAY_PATH_CHARACTERS = re.compile(r"([-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})+")
GATEWAY_HOSTNAME = re.compile(r"(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
GATEWAY_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+")


def _httproute(obj: dict[str, Any]) -> Iterator[str]:
    """Gateway API v1 HTTPRoute's schema and rules, for what the operator renders."""
    spec = obj["spec"]
    parents: dict[tuple[str, str, str, str], list[str]] = {}
    for ref in spec.get("parentRefs") or []:
        group, kind = ref.get("group", "gateway.networking.k8s.io"), ref.get("kind", "Gateway")
        if len(group) > 253 or not GATEWAY_GROUP.fullmatch(group):
            yield _v("spec.parentRefs.group", "not a group", group)
        if not 0 < len(kind) <= 63 or not GATEWAY_KIND.fullmatch(kind):
            yield _v("spec.parentRefs.kind", "not a kind", kind)
        parents.setdefault((group, kind, ref["name"], ref.get("namespace", "")), []).append(ref.get("sectionName", ""))
    for sections in parents.values():
        if len(sections) > 1 and ("" in sections or len(set(sections)) != len(sections)):
            yield _v("spec.parentRefs", "sectionName must be set and unique for a parent listed twice", sections)
    for hostname in spec.get("hostnames") or []:
        if len(hostname) > 253 or not GATEWAY_HOSTNAME.fullmatch(hostname):
            yield _v("spec.hostnames", "not a hostname", hostname)
    for rule in spec["rules"]:
        for match in rule.get("matches") or []:
            path = match["path"]["value"]
            if (not path.startswith("/") or any(p in path for p in (*INVALID_PATH_SEQUENCES, "#"))
                    or path.endswith(INVALID_PATH_SUFFIXES) or not GATEWAY_PATH_CHARACTERS.fullmatch(path)):
                yield _v("spec.rules.matches.path.value", "invalid for PathPrefix", path)
            for header in match.get("headers") or []:
                if not GATEWAY_HEADER_NAME.fullmatch(header["name"]) or len(header["value"]) > 4096:
                    yield _v("spec.rules.matches.headers", "not a header name and value", header["name"])


def _configmap(obj: dict[str, Any]) -> Iterator[str]:
    data = obj.get("data") or {}
    for key in data:
        if len(key) > 253 or not CONFIGMAP_KEY.fullmatch(key) or key in (".", "..") or key.startswith(".."):
            yield _v("data", "key is not a valid ConfigMap key", key)
    size = sum(len(v.encode()) for v in data.values())  # ValidateConfigMap counts values only
    if size > CONFIGMAP_BYTES:
        yield _v("data", f"over {CONFIGMAP_BYTES} bytes in total", size)


_BY_KIND = {"Deployment": _deployment, "Service": _service, "Ingress": _ingress, "ConfigMap": _configmap,
            "HTTPRoute": _httproute}


def violations(obj: dict[str, Any], app: str) -> list[str]:
    """Every rule above that ``obj`` breaks, as "Kind field: message"."""
    kind = obj["kind"]
    found = list(_metadata(obj, app, dns1035=kind == "Service"))
    found += _BY_KIND[kind](obj)
    return [f"{kind} {message}" for message in found]


def rule_of(violation: str) -> str:
    """The violation without its value: the same rule broken by two specs reads the same."""
    return re.sub(r"\[\d+\]", "[N]", violation.split(" = ", 1)[0])
