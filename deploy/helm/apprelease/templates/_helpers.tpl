{{- /* Names: see values.yaml. */}}
{{- define "apprelease.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "apprelease.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "apprelease.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "apprelease.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- /* Objects outside the release's namespace (cluster-scoped ones, Roles in watched
  namespaces): the release's namespace in the name, so two releases never share one. */}}
{{- define "apprelease.scopedName" -}}
{{ .Release.Namespace }}:{{ include "apprelease.fullname" . }}
{{- end }}

{{- define "apprelease.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "apprelease.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "apprelease.labels" -}}
app.kubernetes.io/name: {{ include "apprelease.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- /* Selectors are immutable in a Deployment: these stay as the first chart had them. */}}
{{- define "apprelease.selectorLabels" -}}
app.kubernetes.io/name: {{ include "apprelease.name" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "apprelease.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- /* What the operator does, namespace by namespace (deploy/10-rbac.yaml carries the same). */}}
{{- define "apprelease.rules" -}}
- apiGroups: [apprelease.io]
  resources: [appreleases]
  verbs: [get, list, watch, patch]
- apiGroups: [apprelease.io]
  resources: [appreleases/status]
  verbs: [get, patch]
# ReleasePipelines and ReleaseApprovals (docs/pipelines.md): read; their status written.
- apiGroups: [apprelease.io]
  resources: [releasepipelines, releaseapprovals]
  verbs: [get, list, watch]
- apiGroups: [apprelease.io]
  resources: [releasepipelines/status, releaseapprovals/status]
  verbs: [get, patch]
# Analysis templates (docs/analysis.md): read when a rollout runs an analysis.
- apiGroups: [apprelease.io]
  resources: [analysistemplates, clusteranalysistemplates]
  verbs: [get, list, watch]
- apiGroups: [apps]
  resources: [deployments, controllerrevisions]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [services, configmaps]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [networking.k8s.io]
  resources: [ingresses]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, patch]
- apiGroups: [""]
  resources: [pods/status]
  verbs: [patch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch]
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
{{- end }}

{{- define "apprelease.consoleLabels" -}}
app.kubernetes.io/name: {{ include "apprelease.name" . }}
app.kubernetes.io/component: console
{{- end }}

{{- /* The pod's labels: selector, chart labels, then the user's (which cannot replace them). */}}
{{- define "apprelease.podLabels" -}}
{{- $labels := merge (fromYaml (include "apprelease.selectorLabels" .)) (fromYaml (include "apprelease.labels" .)) }}
{{- toYaml (merge $labels .Values.podLabels) }}
{{- end }}

{{- /* What the console's own identity reads (its watches); no Secrets, no writes. */}}
{{- define "apprelease.consoleReadRules" -}}
- apiGroups: [apprelease.io]
  resources: [appreleases]
  verbs: [get, list, watch]
- apiGroups: [apps]
  resources: [deployments, controllerrevisions]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [pods, events]
  verbs: [get, list, watch]
{{- end }}
