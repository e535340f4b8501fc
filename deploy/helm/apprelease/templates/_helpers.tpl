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

{{- define "apprelease.consoleLabels" -}}
app.kubernetes.io/name: apprelease
app.kubernetes.io/component: console
{{- end }}
