"""Container resources drawn the way they must fit together.

The CRD's rules on ``spec.resources`` tie keys to values (hugepages take multiples of their
page size, extended resources whole numbers) and requests to limits (equal for hugepages and
extended resources, at most the limit otherwise). Drawn key by key from the rules' shapes,
almost every candidate broke one of them and the filters threw resources away; here each
entry is drawn for its kind, and now and then one breaks a rule on purpose (the admission
emulation decides, as everywhere).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from apprelease.api.resources import EXTENDED_PATTERN

from .regex_strings import matching

STANDARD = ("cpu", "memory", "ephemeral-storage")
PAGE_SIZES = {"64Ki": 2**16, "2Mi": 2**21, "32Mi": 2**25, "1Gi": 2**30}
_quantities = st.one_of(
    matching(r"[0-9]{1,4}(\.[0-9]{1,3})?(m|Ki|Mi|Gi|k|M|G)?$"),
    matching(r"([0-9]{1,4}(\.[0-9]{0,3})?|\.[0-9]{1,3})(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]{1,2})?$"),
    st.integers(0, 2**63 - 1),
    st.sampled_from(["0", "1.", ".5", "1E", "8Ei", "1n", "1.0000000011", "9" * 19, "1e99", "1e-99"]),
)
_hostile = st.sampled_from(["+", "-", ".", "-1", "+1", "1e100", "1e2147483648", "1e9223372036854775807",
                            "1.5", "lots", -1])


def _hugepages(page: str) -> st.SearchStrategy[Any]:
    size = PAGE_SIZES[page]
    pages = st.integers(0, 64)
    whole = st.one_of(
        pages.map(lambda n: n * size),
        pages.map(lambda n: f"{n * size // 2**10}Ki"),
        pages.map(lambda n: str(n * size)),
    )
    return _rarely(whole, st.sampled_from(["1Mi", "1.5Gi", "1Ei"]))  # not multiples, or not whole


_extended_names = st.one_of(st.sampled_from(["example.com/gpu", "nvidia.com/gpu", "fpga.example.org/arria10"]),
                            matching(EXTENDED_PATTERN))
_valid_names = st.one_of(
    st.sampled_from(STANDARD), st.sampled_from(STANDARD),
    st.sampled_from([f"hugepages-{p}" for p in PAGE_SIZES]),
    _extended_names,
)
_hostile_names = st.sampled_from(["gpu", "kubernetes.io/foo", "requests.example.com/x", "hugepages-x", "pods"])


def _value_for(name: str) -> st.SearchStrategy[Any]:
    if name.startswith("hugepages-") and name.removeprefix("hugepages-") in PAGE_SIZES:
        return _hugepages(name.removeprefix("hugepages-"))
    if "/" in name:
        return st.one_of(st.integers(0, 16), st.integers(0, 16).map(str))
    return _quantities


def _rarely(usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``odd`` one time in twenty (not at 0: hypothesis draws its simplest choices often)."""
    return st.integers(0, 19).flatmap(lambda n: odd if n == 19 else usual)


@st.composite
def resources(draw: st.DrawFn) -> dict[str, Any]:
    """{requests, limits}: per name a limit, a request, or both (equal, or drawn apart);
    hugepages and extended resources mostly as Kubernetes wants them (equal, limit set)."""
    names = draw(st.lists(_rarely(_valid_names, _hostile_names), max_size=4, unique=True))
    limits: dict[str, Any] = {}
    requests: dict[str, Any] = {}
    for name in names:
        value = draw(_rarely(_value_for(name), st.one_of(_hostile, st.sampled_from(["1.5", "1k", "9" * 16, "3Mi"]))))
        shared = name.startswith("hugepages-") or "/" in name  # request == limit, limit required
        usual = ["both-equal", "limit"] if shared else ["both-equal", "both", "limit", "request"]
        placement = draw(_rarely(st.sampled_from(usual), st.sampled_from(["both", "request"])))
        if placement != "request":
            limits[name] = value
        if placement.startswith("both"):
            requests[name] = value if placement == "both-equal" else draw(_value_for(name))
        elif placement == "request":
            requests[name] = value
    result = {}
    if requests or draw(st.booleans()):
        result["requests"] = requests
    if limits or draw(st.booleans()):
        result["limits"] = limits
    return result
