"""The ready endpoints behind a Service, sampled from its EndpointSlices in a background
thread for as long as a test runs something that must never leave the Service without them."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from kubernetes import client as k8s_client

from apprelease.k8s.client import load_api_client

# Between two reads of the EndpointSlices (each a few milliseconds on the local apiserver).
SAMPLE_SECONDS = 0.05


@dataclass(frozen=True)
class Sample:
    at: float  # time.time()
    ready: frozenset[str]  # the pods listed ready, by name


@dataclass
class ReadyEndpoints:
    """``with ReadyEndpoints(kubeconfig, namespace, "web") as seen: ...``, then ``seen.fewest()``."""

    kubeconfig: str
    namespace: str
    service: str
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._api_client = load_api_client(self.kubeconfig, pool_size=1)
        self._discovery = k8s_client.DiscoveryV1Api(self._api_client)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"endpoints-{self.service}", daemon=True)

    def __enter__(self) -> ReadyEndpoints:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._api_client.close()

    def fewest(self) -> Sample:
        assert self.samples, f"no sample of {self.service}'s endpoints: {self.errors[:3]}"
        return min(self.samples, key=lambda s: len(s.ready))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                slices = self._discovery.list_namespaced_endpoint_slice(
                    self.namespace, label_selector=f"kubernetes.io/service-name={self.service}",
                    _request_timeout=10,
                )
                ready = frozenset(
                    e.target_ref.name for s in slices.items for e in s.endpoints or []
                    if e.target_ref is not None and e.conditions is not None and e.conditions.ready
                )
                self.samples.append(Sample(time.time(), ready))
            except Exception as error:  # a test reads errors on failure
                self.errors.append(repr(error))
            self._stop.wait(SAMPLE_SECONDS)  # the sampling cadence
