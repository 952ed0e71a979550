{{/* Name of the chart, overridable. */}}
{{- define "tgfed-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified name of the release's objects. */}}
{{- define "tgfed-agent.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "tgfed-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tgfed-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: agent
{{- end }}

{{- define "tgfed-agent.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "tgfed-agent.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tgfed
tgfed.io/cluster: {{ .Values.clusterId | quote }}
{{- end }}

{{- define "tgfed-agent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tgfed-agent.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tgfed-agent.credentialsSecret" -}}
{{- default (printf "%s-credentials" (include "tgfed-agent.fullname" .)) .Values.credentials.secretName }}
{{- end }}

{{- define "tgfed-agent.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The agent's config file (`tgfed agent --config`), keys as agent/config/agent-options.ts names
them. Files point into the credentials Secret's mount.
*/}}
{{- define "tgfed-agent.config" -}}
{{- $dir := "/etc/tgfed/credentials" }}
{{- $cfg := dict "clusterId" .Values.clusterId "hubAddress" .Values.hub.address "healthAddress" (printf "0.0.0.0:%d" (int .Values.healthPort)) }}
{{- if .Values.watch.namespaces }}
{{- $_ := set $cfg "namespaces" .Values.watch.namespaces }}
{{- end }}
{{- if .Values.watch.labelSelector }}
{{- $_ := set $cfg "labelSelector" .Values.watch.labelSelector }}
{{- end }}
{{- if .Values.hub.insecure }}
{{- $_ := set $cfg "insecure" true }}
{{- else }}
{{- $_ := set $cfg "tlsCaFile" (printf "%s/ca.crt" $dir) }}
{{- if eq .Values.credentials.mode "tls" }}
{{- $_ := set $cfg "tlsCertFile" (printf "%s/tls.crt" $dir) }}
{{- $_ := set $cfg "tlsKeyFile" (printf "%s/tls.key" $dir) }}
{{- else }}
{{- $_ := set $cfg "tokenFile" (printf "%s/token" $dir) }}
{{- end }}
{{- if .Values.hub.serverName }}
{{- $_ := set $cfg "tlsServerName" .Values.hub.serverName }}
{{- end }}
{{- end }}
{{- toYaml (mustMergeOverwrite (deepCopy .Values.config) $cfg) }}
{{- end }}
