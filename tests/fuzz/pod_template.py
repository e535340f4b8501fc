"""Strategies for ``spec.podTemplate``: the CRD keeps it free-form
(``x-kubernetes-preserve-unknown-fields``), so the apiserver admits any JSON object there.

Generated: plausible pod-template fragments (what the field's description invites: labels,
nodeSelector, tolerations, affinity, imagePullSecrets, serviceAccountName,
securityContext, sidecars, volumes) and the same fragments corrupted, a wrong-typed value at
a random depth (``metadata: "x"``, containers as a map, numbers past int64, nulls, floats).
``APP`` stands for the app's own name (the main container's name); callers substitute it.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

from .regex_strings import matching

APP = "__APP__"

_dns_label = matching(r"[a-z]([-a-z0-9]{0,8}[a-z0-9])?$")
_label_key = st.one_of(
    _dns_label,
    matching(r"[a-z]{1,6}\.(io|com)/[a-z][-a-z0-9]{0,8}$"),
    st.sampled_from(["app.kubernetes.io/name", "apprelease.io/track", "apprelease.io/revision"]),
)
_labels = st.dictionaries(_label_key, st.one_of(_dns_label, st.just("")), max_size=3)
_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 2**31, 2**63, 2**64, 10**30]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
hostile_value = st.recursive(
    _scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)

_env = st.lists(
    st.fixed_dictionaries({"name": matching(r"[A-Z_][A-Z0-9_]{0,8}$")},
                          optional={"value": st.text(max_size=10)}),
    max_size=2,
)
_container = st.fixed_dictionaries(
    {"name": st.sampled_from([APP, "sidecar", "log-agent"])},
    optional={
        "image": st.sampled_from(["busybox:1.36", "fluent-bit:3", ""]),
        "ports": st.lists(st.fixed_dictionaries(
            {"containerPort": st.integers(1, 65535)},
            optional={"name": _dns_label, "protocol": st.sampled_from(["TCP", "UDP"])}), max_size=2),
        "env": _env,
        "resources": st.fixed_dictionaries({}, optional={
            "limits": st.dictionaries(st.sampled_from(["cpu", "memory"]),
                                      st.sampled_from(["100m", "1", "64Mi", "0"]), max_size=2)}),
        "volumeMounts": st.lists(st.fixed_dictionaries(
            {"name": st.sampled_from(["data", "apprelease-config"]),
             "mountPath": st.sampled_from(["/data", "/etc/app", "/"])}), max_size=2),
        "securityContext": st.fixed_dictionaries({}, optional={
            "privileged": st.booleans(), "runAsUser": st.integers(0, 2**31)}),
    },
)
_toleration = st.fixed_dictionaries({}, optional={
    "key": _label_key, "operator": st.sampled_from(["Exists", "Equal"]), "value": _dns_label,
    "effect": st.sampled_from(["NoSchedule", "NoExecute", "PreferNoSchedule"]),
    "tolerationSeconds": st.integers(0, 2**40),
})
_volume = st.one_of(
    st.fixed_dictionaries({"name": st.sampled_from(["data", "apprelease-config"]),
                           "emptyDir": st.just({})}),
    st.fixed_dictionaries({"name": st.just("cfg"), "configMap": st.fixed_dictionaries(
        {"name": _dns_label})}),
    st.fixed_dictionaries({"name": st.just("host"), "hostPath": st.fixed_dictionaries(
        {"path": st.sampled_from(["/", "/var/run/docker.sock"])})}),
)
_affinity = st.just({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
    "nodeSelectorTerms": [{"matchExpressions": [
        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}]}}})
_pod_spec = st.fixed_dictionaries({}, optional={
    "nodeSelector": _labels,
    "tolerations": st.lists(_toleration, max_size=2),
    "affinity": _affinity,
    "imagePullSecrets": st.lists(st.fixed_dictionaries({"name": _dns_label}), max_size=2),
    "serviceAccountName": _dns_label,
    "securityContext": st.fixed_dictionaries({}, optional={
        "runAsNonRoot": st.booleans(), "runAsUser": st.integers(0, 2**31),
        "fsGroup": st.integers(0, 2**31)}),
    "containers": st.lists(_container, max_size=2),
    "initContainers": st.lists(_container, max_size=1),
    "volumes": st.lists(_volume, max_size=2),
    "hostNetwork": st.booleans(),
    "terminationGracePeriodSeconds": st.integers(0, 2**63 - 1),
    "priorityClassName": _dns_label,
})
plausible = st.fixed_dictionaries({}, optional={
    "metadata": st.fixed_dictionaries({}, optional={"labels": _labels, "annotations": _labels}),
    "spec": _pod_spec,
})

# Shapes seen in the wild or in the review: wrong types where the renderer merges.
named_hostile = st.sampled_from([
    {"metadata": "x"},
    {"metadata": {"labels": "x"}},
    {"metadata": {"labels": ["a"]}},
    {"metadata": {"labels": None}},
    {"metadata": {"annotations": 5}},
    {"spec": "x"},
    {"spec": None},
    {"spec": {"containers": "x"}},
    {"spec": {"containers": {APP: {"image": "x"}}}},
    {"spec": {"containers": ["x"]}},
    {"spec": {"containers": [{"name": APP, "env": "x"}]}},
    {"spec": {"containers": [{"name": APP, "ports": {"containerPort": 1}}]}},
    {"spec": {"containers": [{"name": APP, "image": 5}]}},
    {"spec": {"containers": [{"name": APP, "volumeMounts": [5]}]}},
    {"spec": {"containers": [{"name": None}]}},
    {"spec": {"volumes": "x"}},
    {"spec": {"volumes": [{"name": "apprelease-config", "emptyDir": {}}]}},
    {"spec": {"terminationGracePeriodSeconds": 2**64}},
    {"spec": {"terminationGracePeriodSeconds": 1.5}},
])


def _paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix] if prefix else []
    if isinstance(tree, dict):
        for key, value in tree.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            found += _paths(value, (*prefix, index))
    return found


@st.composite
def corrupted(draw: st.DrawFn) -> dict[str, Any]:
    """A plausible fragment with one value, at any depth, replaced by a wrong-typed one."""
    tree = copy.deepcopy(draw(plausible))
    paths = _paths(tree)
    if not paths:
        return {draw(st.sampled_from(["metadata", "spec"])): draw(hostile_value)}
    path = draw(st.sampled_from(paths))
    parent = tree
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = draw(hostile_value)
    return tree


pod_templates = st.one_of(plausible, plausible, corrupted(), named_hostile,
                          st.dictionaries(st.text(max_size=8), hostile_value, max_size=3))


def with_app_name(value: Any, name: str) -> Any:
    """Replace the APP placeholder anywhere in ``value`` with the app's name."""
    if value == APP:
        return name
    if isinstance(value, dict):
        return {with_app_name(k, name): with_app_name(v, name) for k, v in value.items()}
    if isinstance(value, list):
        return [with_app_name(v, name) for v in value]
    return value
