"""Go templates KWOK renders into status patches (with the pod or node as `.`).

KWOK's Stage API takes status as a Go template producing YAML; there is no structured
alternative. Pod fragments are concatenated by kwok_stages.py: a prefix setting `$now` and
`$ready`, then the parts of the status that stage changes. Node templates and the
init-container/network parts follow KWOK v0.8.0's own default stages.
"""

from __future__ import annotations

NOW_READY = "{{ $now := Now }}\n{{ $ready := true }}\n"
NOW_NOT_READY = "{{ $now := Now }}\n{{ $ready := false }}\n"

# Containers started, not ready yet. Only the conditions a kubelet owns are written: a
# strategic merge patch merges `conditions` by type, so any other condition (a readiness
# gate set by a controller) is left as it is.
CONDITIONS_STARTING = """\
conditions:
- type: Initialized
  status: "True"
  lastTransitionTime: {{ $now | Quote }}
- type: PodReadyToStartContainers
  status: "True"
  lastTransitionTime: {{ $now | Quote }}
- type: ContainersReady
  status: "False"
  lastTransitionTime: {{ $now | Quote }}
  reason: ContainersNotReady
  message: 'containers with unready status: [{{ range .spec.containers }}{{ .name }} {{ end }}]'
- type: Ready
  status: "False"
  lastTransitionTime: {{ $now | Quote }}
  reason: ContainersNotReady
  message: 'containers with unready status: [{{ range .spec.containers }}{{ .name }} {{ end }}]'
"""

# Containers ready; Ready as a kubelet computes it (GeneratePodReadyCondition): True only if
# every readiness gate's condition exists with status "True", else False with the kubelet's
# reason and message. Gate conditions are read, never written. A transition time is kept
# while the status does not change; reason/message are removed (null) when Ready is True.
CONDITIONS_READY_BY_GATES = """\
{{ $pod := . }}
{{ $unready := list }}
{{ range .spec.readinessGates }}
{{ $gate := .conditionType }}
{{ $gateStatus := "" }}
{{ range $pod.status.conditions }}{{ if eq .type $gate }}{{ $gateStatus = .status }}{{ end }}{{ end }}
{{ if eq $gateStatus "" }}
{{ $unready = append $unready (printf "corresponding condition of pod readiness gate %q does not exist." $gate) }}
{{ else if ne $gateStatus "True" }}
{{ $unready = append $unready (printf "the status of pod readiness gate %q is not \\"True\\", but %s" $gate $gateStatus) }}
{{ end }}
{{ end }}
{{ $readyStatus := "True" }}
{{ if $unready }}{{ $readyStatus = "False" }}{{ end }}
{{ $containersSince := $now }}
{{ $readySince := $now }}
{{ range .status.conditions }}
{{ if and (eq .type "ContainersReady") (eq .status "True") .lastTransitionTime }}{{ $containersSince = .lastTransitionTime }}{{ end }}
{{ if and (eq .type "Ready") (eq .status $readyStatus) .lastTransitionTime }}{{ $readySince = .lastTransitionTime }}{{ end }}
{{ end }}
conditions:
- type: ContainersReady
  status: "True"
  lastTransitionTime: {{ $containersSince | Quote }}
  reason: null
  message: null
- type: Ready
  status: {{ $readyStatus | Quote }}
  lastTransitionTime: {{ $readySince | Quote }}
  {{ if $unready }}
  reason: ReadinessGatesNotReady
  message: {{ join ", " $unready | Quote }}
  {{ else }}
  reason: null
  message: null
  {{ end }}
"""

CONTAINERS_RUNNING = """\
{{ $startedAt := or .status.startTime $now }}
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  ready: {{ $ready }}
  started: true
  restartCount: 0
  state:
    running:
      startedAt: {{ $startedAt | Quote }}
{{ end }}
"""

# restartCount = previous + 1 (1 on the first crash): the stage matches again after each
# patch, so the count grows by one per restart interval for as long as the pod exists.
CONTAINERS_CRASHLOOPING = """\
{{ $pod := . }}
containerStatuses:
{{ range $container := .spec.containers }}
{{ $restarts := 1 }}
{{ range $previous := $pod.status.containerStatuses }}
{{ if eq $previous.name $container.name }}{{ $restarts = add1 $previous.restartCount }}{{ end }}
{{ end }}
- name: {{ $container.name | Quote }}
  image: {{ $container.image | Quote }}
  ready: false
  started: false
  restartCount: {{ $restarts }}
  lastState:
    terminated:
      exitCode: 1
      reason: Error
      startedAt: {{ $now | Quote }}
      finishedAt: {{ $now | Quote }}
  state:
    waiting:
      reason: CrashLoopBackOff
      message: {{ printf "back-off restarting failed container %s in pod %s_%s" $container.name $pod.metadata.name $pod.metadata.namespace | Quote }}
{{ end }}
"""

CONTAINERS_COMPLETED = """\
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  ready: false
  started: false
  restartCount: 0
  state:
    terminated:
      exitCode: 0
      reason: Completed
      startedAt: {{ $now | Quote }}
      finishedAt: {{ $now | Quote }}
{{ end }}
phase: Succeeded
"""

# As KWOK's pod-ready: init containers ran to completion (sidecars keep running).
INIT_CONTAINERS_DONE = """\
initContainerStatuses:
{{ range .spec.initContainers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  ready: true
  restartCount: 0
  {{ if eq .restartPolicy "Always" }}
  started: true
  state:
    running:
      startedAt: {{ $now | Quote }}
  {{ else }}
  state:
    terminated:
      exitCode: 0
      reason: Completed
      startedAt: {{ $now | Quote }}
      finishedAt: {{ $now | Quote }}
  {{ end }}
{{ end }}
"""

# Allocates the pod IP (from the node's podCIDR): only in the stage that starts the pod.
NETWORK_AND_RUNNING = """\
{{ $hostIPs := NodeIPsWith .spec.nodeName }}
{{ with $hostIPs }}
hostIP: {{ index . 0 | Quote }}
hostIPs:
{{ range . }}
- ip: {{ . | Quote }}
{{ end }}
{{ end }}
{{ $podIPs := PodIPsWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
{{ with $podIPs }}
podIP: {{ index . 0 | Quote }}
podIPs:
{{ range . }}
- ip: {{ . | Quote }}
{{ end }}
{{ end }}
phase: Running
startTime: {{ $now | Quote }}
"""

# Verbatim from KWOK's node-initialize (kustomize/stage/node/fast), which keeps any
# capacity/allocatable/addresses the Node was created with.
NODE_INITIALIZE = """\
{{ $now := Now }}
{{ $lastTransitionTime := or .metadata.creationTimestamp $now }}
conditions:
{{ range NodeConditions }}
- lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $lastTransitionTime | Quote }}
  message: {{ .message | Quote }}
  reason: {{ .reason | Quote }}
  status: {{ .status | Quote }}
  type: {{ .type  | Quote}}
{{ end }}

{{ $hasInternalIP := false }}
{{ $hasHostname := false }}
{{ range .status.addresses }}
  {{ if eq .type "InternalIP" }}
    {{ $hasInternalIP = true }}
  {{ end }}
  {{ if eq .type "Hostname" }}
    {{ $hasHostname = true }}
  {{ end }}
{{ end }}
{{ if or (not $hasInternalIP) (not $hasHostname) }}
addresses:
{{ end }}
{{ if not $hasInternalIP }}
{{ with NodeIP }}
- address: {{ . | Quote }}
  type: InternalIP
{{ end }}
{{ end }}
{{ if not $hasHostname }}
{{ with NodeName }}
- address: {{ . | Quote }}
  type: Hostname
{{ end }}
{{ end }}

{{ with NodePort }}
daemonEndpoints:
  kubeletEndpoint:
    Port: {{ . }}
{{ end }}

allocatable:
{{ with .status.allocatable }}
{{ YAML . 1 }}
{{ else }}
  cpu: 1k
  memory: 1Ti
  pods: 1M
{{ end }}
capacity:
{{ with .status.capacity }}
{{ YAML . 1 }}
{{ else }}
  cpu: 1k
  memory: 1Ti
  pods: 1M
{{ end }}

{{ $nodeInfo := .status.nodeInfo }}
{{ $kwokVersion := printf "kwok-%s" Version }}
nodeInfo:
  architecture: {{ or $nodeInfo.architecture "amd64" }}
  bootID: {{ or $nodeInfo.bootID `""` }}
  containerRuntimeVersion: {{ or $nodeInfo.containerRuntimeVersion $kwokVersion }}
  kernelVersion: {{ or $nodeInfo.kernelVersion $kwokVersion }}
  kubeProxyVersion: {{ or $nodeInfo.kubeProxyVersion $kwokVersion }}
  kubeletVersion: {{ or $nodeInfo.kubeletVersion $kwokVersion }}
  machineID: {{ or $nodeInfo.machineID `""` }}
  operatingSystem: {{ or $nodeInfo.operatingSystem "linux" }}
  osImage: {{ or $nodeInfo.osImage `""` }}
  systemUUID: {{ or $nodeInfo.systemUUID `""` }}
phase: Running
"""

# Verbatim from KWOK's node-heartbeat-with-lease: conditions refreshed rarely, the
# Lease (renewed by kwok's lease controller) is the real heartbeat.
NODE_HEARTBEAT = """\
{{ $now := Now }}
{{ $lastTransitionTime := or .metadata.creationTimestamp $now }}
conditions:
{{ range NodeConditions }}
- lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $lastTransitionTime | Quote }}
  message: {{ .message | Quote }}
  reason: {{ .reason | Quote }}
  status: {{ .status | Quote }}
  type: {{ .type | Quote }}
{{ end }}
"""


# --- Whole pod templates, one per pod stage -----------------------------------------------

# Pending -> Running with containers started but not ready, IP assigned.
POD_START = (
    NOW_NOT_READY
    + CONDITIONS_STARTING
    + CONTAINERS_RUNNING
    + INIT_CONTAINERS_DONE
    + NETWORK_AND_RUNNING
)
# Containers become ready (keeps IP and start time); Ready as the readiness gates allow.
POD_CONTAINERS_READY = NOW_READY + CONDITIONS_READY_BY_GATES + CONTAINERS_RUNNING
# A readiness gate's condition changed: Ready follows (containers stay ready).
POD_READINESS_GATES = NOW_READY + CONDITIONS_READY_BY_GATES
# Pending -> Running with every container crash-looping.
POD_START_CRASHLOOP = (
    NOW_NOT_READY
    + CONDITIONS_STARTING
    + CONTAINERS_CRASHLOOPING
    + INIT_CONTAINERS_DONE
    + NETWORK_AND_RUNNING
)
# One more restart of every container (conditions untouched).
POD_RESTART = NOW_NOT_READY + CONTAINERS_CRASHLOOPING
# Running -> Succeeded (Job pods).
POD_COMPLETE = NOW_NOT_READY + CONDITIONS_STARTING + CONTAINERS_COMPLETED


def pod_containers_stop_at(annotation: str, exit_seconds: int) -> str:
    """Metadata template recording when a terminating pod's containers will have stopped.

    As a kubelet: the preStop hooks run first (Kubernetes' `lifecycle.preStop.sleep`; the
    containers' hooks run in parallel, so the longest counts), then the containers get
    SIGTERM; without a preStop hook they take `exit_seconds` to exit. Either way no longer
    than the pod's grace period (deletionGracePeriodSeconds). The time is written once, as an
    absolute RFC 3339 time, because KWOK recomputes a stage's delay on every update of the
    pod: a delay counted from "now" would restart whenever a controller patches the pod.
    """
    return (
        "{{ $exitSeconds := " + str(int(exit_seconds)) + " }}\n"
        + """\
{{ $preStopSeconds := 0 }}
{{ range .spec.containers }}{{ with .lifecycle }}{{ with .preStop }}{{ with .sleep }}
{{ $preStopSeconds = max $preStopSeconds .seconds }}
{{ end }}{{ end }}{{ end }}{{ end }}
{{ $stopAfter := $exitSeconds }}
{{ if gt $preStopSeconds 0 }}{{ $stopAfter = $preStopSeconds }}{{ end }}
{{ $stopAfter = min $stopAfter (or .metadata.deletionGracePeriodSeconds 0) }}
annotations:
"""
        + "  " + annotation + ': {{ dateInZone "2006-01-02T15:04:05.999999999Z07:00"'
        + ' (now | dateModify (printf "+%ds" $stopAfter)) "UTC" | Quote }}\n'
    )
