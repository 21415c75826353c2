{{/* Names and labels shared by the templates. */}}
{{- define "irqtrace.labels" -}}
app.kubernetes.io/name: irqtrace
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "irqtrace.selector" -}}
app.kubernetes.io/name: irqtrace
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "irqtrace.operatorImage" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "irqtrace.agentImage" -}}
{{ .Values.agent.image.repository }}:{{ .Values.agent.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The ingest Service's DNS name: agents dial it, its certificate names it. */}}
{{- define "irqtrace.ingestHost" -}}
{{ .Release.Name }}-ingest.{{ .Release.Namespace }}.svc
{{- end }}

{{- define "irqtrace.ingestSecret" -}}
{{- if eq .Values.tls.mode "existing" }}{{ .Values.tls.existing.ingestSecret }}{{ else }}{{ .Release.Name }}-ingest-tls{{ end }}
{{- end }}

{{- define "irqtrace.agentSecret" -}}
{{- if eq .Values.tls.mode "existing" }}{{ .Values.tls.existing.agentSecret }}{{ else }}{{ .Release.Name }}-agent-tls{{ end }}
{{- end }}

{{- define "irqtrace.natsUrl" -}}
{{- if .Values.nats.bundled }}nats://{{ .Release.Name }}-nats.{{ .Release.Namespace }}.svc:4222{{ else }}{{ .Values.nats.url }}{{ end }}
{{- end }}

{{- define "irqtrace.natsSecret" -}}
{{- if .Values.nats.bundled }}{{ .Release.Name }}-nats-auth{{ else }}{{ .Values.nats.credentialsSecret }}{{ end }}
{{- end }}
