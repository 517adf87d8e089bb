{{- define "dpf-twin.labels" -}}
app.kubernetes.io/name: dpf-operator
app.kubernetes.io/part-of: dpf-twin
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}
