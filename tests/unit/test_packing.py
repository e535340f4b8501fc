"""Packed cache entries: lossless, small, and costing no more than their length."""

from __future__ import annotations

import hashlib
import tracemalloc

import orjson

from apprelease.k8s import packing
from apprelease.k8s.observe import slim_object
from apprelease.k8s.packing import pack, unpack
from apprelease.render import render_initial
from tests.unit.sim import make_app


def _rendered_children() -> list[dict]:
    app = make_app({"config": {"mountPath": "/etc/shop", "files": {"app.yml": "a: 1\n"}},
                    "ingress": {"host": "shop.example.com"}})
    return render_initial(app)


def test_unpack_returns_what_was_packed() -> None:
    for obj in _rendered_children():
        assert unpack(pack(obj)) == obj


def test_rendered_children_pack_to_under_a_third_of_their_json() -> None:
    for obj in _rendered_children():
        slim = slim_object(obj)
        assert len(pack(slim)) < len(orjson.dumps(slim)) / 3, obj["kind"]


def test_packed_objects_cost_their_length_not_a_growth_buffer() -> None:
    # Hex digests barely compress: ~1.7 KB packed each, so a kept growth buffer would show.
    value = {"metadata": {"name": "x", "labels": {
        f"k{i}": hashlib.sha256(str(i).encode()).hexdigest() for i in range(40)}}}
    pack(value)  # the preset dictionary is built once per process, not per object
    # Counted where pack() allocated them: threads left by other tests allocate meanwhile.
    only_packing = [tracemalloc.Filter(True, packing.__file__)]
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot().filter_traces(only_packing)
        kept = [pack(value) for _ in range(200)]
        after = tracemalloc.take_snapshot().filter_traces(only_packing)
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown < 1.1 * sum(len(k) for k in kept), (grown, sum(len(k) for k in kept))


def test_numbers_past_64_bits_pack_and_come_back_exactly() -> None:
    """The apiserver stores any JSON number under podTemplate and returns 2**64 as written;
    orjson cannot write it, and the kopf index handler packing it must not fail (finding 21)."""
    app = {"metadata": {"name": "x"}, "spec": {"podTemplate": {"spec": {
        "terminationGracePeriodSeconds": 2**64, "priority": -(2**70)}}, "image": "hi \U0001F600"}}
    assert unpack(pack(app)) == app
    assert isinstance(unpack(pack(app))["spec"]["podTemplate"]["spec"]["terminationGracePeriodSeconds"], int)


def test_the_index_handler_packs_what_the_apiserver_returns() -> None:
    import asyncio

    from apprelease.controller.handlers import apprelease_index

    body = {"apiVersion": "apprelease.io/v1alpha1", "kind": "AppRelease",
            "metadata": {"name": "big", "namespace": "ns", "uid": "u", "generation": 1},
            "spec": {"image": "app:1", "podTemplate": {"spec": {"terminationGracePeriodSeconds": 2**64}}}}
    index = asyncio.run(apprelease_index(body=body, namespace="ns", name="big"))
    packed = index[("ns", "big")]
    assert unpack(packed)["spec"]["podTemplate"]["spec"]["terminationGracePeriodSeconds"] == 2**64
