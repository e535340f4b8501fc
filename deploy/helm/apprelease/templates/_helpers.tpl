{{- define "apprelease.labels" -}}
app.kubernetes.io/name: apprelease
{{- end }}

{{- define "apprelease.selectorLabels" -}}
app.kubernetes.io/name: apprelease
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
{{- if .Values.peering }}
- apiGroups: [kopf.dev]
  resources: [clusterkopfpeerings, kopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}
{{- end }}

{{- define "apprelease.consoleLabels" -}}
app.kubernetes.io/name: apprelease
app.kubernetes.io/component: console
{{- end }}
