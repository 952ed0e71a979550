{{- define "tgfed-hub.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tgfed-hub.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- /* Release "tgfed" gives tgfed-hub, tgfed-worker, tgfed-admin; release "prod" prod-tgfed-hub-hub. */}}
{{- if or (contains $name .Release.Name) (contains "tgfed" .Release.Name) }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of a component's objects: <fullname>-<suffix>. Call with (list $ "worker"). */}}
{{- define "tgfed-hub.componentName" -}}
{{- $ctx := index . 0 -}}
{{- printf "%s-%s" (include "tgfed-hub.fullname" $ctx) (index . 1) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of a component. Call with (list $ "hub"). */}}
{{- define "tgfed-hub.selectorLabels" -}}
{{- $ctx := index . 0 -}}
app.kubernetes.io/name: {{ include "tgfed-hub.name" $ctx }}
app.kubernetes.io/instance: {{ $ctx.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* Labels of a component's objects. Call with (list $ "hub"). */}}
{{- define "tgfed-hub.labels" -}}
{{- $ctx := index . 0 -}}
helm.sh/chart: {{ printf "%s-%s" $ctx.Chart.Name $ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "tgfed-hub.selectorLabels" . }}
app.kubernetes.io/version: {{ $ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
app.kubernetes.io/part-of: tgfed
{{- end }}

{{- define "tgfed-hub.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "tgfed-hub.hubServiceAccountName" -}}
{{- if .Values.hub.serviceAccount.create }}
{{- default (include "tgfed-hub.componentName" (list . "hub")) .Values.hub.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.hub.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tgfed-hub.workerServiceAccountName" -}}
{{- if .Values.worker.serviceAccount.create }}
{{- default (include "tgfed-hub.componentName" (list . "worker")) .Values.worker.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.worker.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tgfed-hub.agentTlsSecret" -}}
{{- default (include "tgfed-hub.componentName" (list . "agent-tls")) .Values.tls.agent.secretName }}
{{- end }}

{{- define "tgfed-hub.adminTlsSecret" -}}
{{- default (include "tgfed-hub.componentName" (list . "admin-tls")) .Values.tls.admin.secretName }}
{{- end }}

{{/*
How the release reaches Redis: bundled, url, secret-url, sentinel or cluster. Fails unless
exactly one is chosen, as the hub's own settings check (checkRedisMode) would at start.
*/}}
{{- define "tgfed-hub.redisMode" -}}
{{- $r := .Values.redis }}
{{- $modes := list }}
{{- if $r.bundled.enabled }}{{ $modes = append $modes "bundled" }}{{ end }}
{{- if $r.url }}{{ $modes = append $modes "url" }}{{ end }}
{{- if $r.sentinel.addresses }}{{ $modes = append $modes "sentinel" }}{{ end }}
{{- if $r.cluster.nodes }}{{ $modes = append $modes "cluster" }}{{ end }}
{{- if and (not $modes) $r.existingSecret }}{{ $modes = append $modes "secret-url" }}{{ end }}
{{- if not $modes }}
{{- fail "Redis is required: set redis.url, redis.sentinel.addresses + redis.sentinel.masterName, redis.cluster.nodes, redis.existingSecret (a URL) or redis.bundled.enabled" }}
{{- end }}
{{- if gt (len $modes) 1 }}
{{- fail (printf "choose one Redis mode; %s are all set" (join " and " $modes)) }}
{{- end }}
{{- if and $r.existingSecret (has (first $modes) (list "url" "bundled")) }}
{{- fail (printf "redis.existingSecret does not go with redis.%s: a standalone Redis takes its password in the URL; put the whole URL into the Secret (key %s) and leave redis.url empty" (ternary "url" "bundled" (eq (first $modes) "url")) $r.existingSecretUrlKey) }}
{{- end }}
{{- if and (eq (first $modes) "sentinel") (not $r.sentinel.masterName) }}
{{- fail "redis.sentinel.masterName is required with redis.sentinel.addresses (the monitored master name)" }}
{{- end }}
{{- first $modes }}
{{- end }}

{{/* Config-file settings the hub and the workers share (hub/config/state-options.ts). */}}
{{- define "tgfed-hub.stateConfig" -}}
{{- $r := .Values.redis }}
{{- $mode := include "tgfed-hub.redisMode" . }}
{{- $cfg := dict "redisKeyPrefix" $r.keyPrefix }}
{{- if eq $mode "bundled" }}
{{- $_ := set $cfg "redisUrl" (printf "redis://%s:6379" (include "tgfed-hub.componentName" (list . "redis"))) }}
{{- else if eq $mode "url" }}
{{- $_ := set $cfg "redisUrl" $r.url }}
{{- else if eq $mode "sentinel" }}
{{- $_ := set $cfg "redisSentinels" $r.sentinel.addresses }}
{{- $_ := set $cfg "redisSentinelName" $r.sentinel.masterName }}
{{- $_ := set $cfg "redisTls" $r.tls }}
{{- else if eq $mode "cluster" }}
{{- $_ := set $cfg "redisClusterNodes" $r.cluster.nodes }}
{{- $_ := set $cfg "redisTls" $r.tls }}
{{- end }}
{{- if .Values.clusters }}
{{- $_ := set $cfg "clustersFile" "/etc/tgfed/clusters/clusters.yaml" }}
{{- end }}
{{- toYaml (mustMergeOverwrite (deepCopy .Values.state) $cfg) }}
{{- end }}

{{/* The hub's config file (hub/config/hub-options.ts). */}}
{{- define "tgfed-hub.hubConfig" -}}
{{- $p := .Values.hub.ports }}
{{- $cfg := include "tgfed-hub.stateConfig" . | fromYaml }}
{{- $_ := set $cfg "agentAddress" (printf "0.0.0.0:%d" (int $p.agent)) }}
{{- $_ := set $cfg "adminAddress" (printf "0.0.0.0:%d" (int $p.admin)) }}
{{- $_ := set $cfg "healthAddress" (printf "0.0.0.0:%d" (int $p.health)) }}
{{- if .Values.insecure }}
{{- $_ := set $cfg "insecure" true }}
{{- else }}
{{- $_ := set $cfg "agentTlsCertFile" "/etc/tgfed/tls/agent/tls.crt" }}
{{- $_ := set $cfg "agentTlsKeyFile" "/etc/tgfed/tls/agent/tls.key" }}
{{- $_ := set $cfg "agentTlsCaFile" "/etc/tgfed/tls/agent/ca.crt" }}
{{- $_ := set $cfg "agentClientCertificates" .Values.tls.agent.clientCertificates }}
{{- if .Values.tls.agent.trustDomain }}
{{- $_ := set $cfg "agentTrustDomain" .Values.tls.agent.trustDomain }}
{{- end }}
{{- $_ := set $cfg "adminTlsCertFile" "/etc/tgfed/tls/admin/tls.crt" }}
{{- $_ := set $cfg "adminTlsKeyFile" "/etc/tgfed/tls/admin/tls.key" }}
{{- if ne .Values.tls.admin.clientCertificates "none" }}
{{- $_ := set $cfg "adminTlsCaFile" "/etc/tgfed/tls/admin/ca.crt" }}
{{- end }}
{{- $_ := set $cfg "adminClientCertificates" .Values.tls.admin.clientCertificates }}
{{- end }}
{{- if include "tgfed-hub.hasAdminCredentials" . }}
{{- $_ := set $cfg "adminTokensFile" "/etc/tgfed/admin/admin-credentials.yaml" }}
{{- end }}
{{- if include "tgfed-hub.hasBindings" . }}
{{- $_ := set $cfg "bindingsFile" "/etc/tgfed/bindings/bindings.yaml" }}
{{- end }}
{{- toYaml (mustMergeOverwrite (deepCopy .Values.hub.config) $cfg) }}
{{- end }}

{{/* A worker's config file (hub/config/worker-options.ts). */}}
{{- define "tgfed-hub.workerConfig" -}}
{{- $cfg := include "tgfed-hub.stateConfig" . | fromYaml }}
{{- $_ := set $cfg "healthAddress" (printf "0.0.0.0:%d" (int .Values.worker.healthPort)) }}
{{- toYaml (mustMergeOverwrite (deepCopy .Values.worker.config) $cfg) }}
{{- end }}

{{- define "tgfed-hub.hasAdminCredentials" -}}
{{- $a := .Values.adminCredentials }}
{{- if or $a.existingSecret $a.tokens $a.certificates }}true{{ end }}
{{- end }}

{{- define "tgfed-hub.hasBindings" -}}
{{- if or .Values.bindings.existingConfigMap .Values.bindings.items }}true{{ end }}
{{- end }}

{{/* Redis credentials from the Secret, as environment variables. */}}
{{- define "tgfed-hub.redisEnv" -}}
{{- $r := .Values.redis }}
{{- if $r.existingSecret }}
{{- if eq (include "tgfed-hub.redisMode" .) "secret-url" }}
- name: TGFED_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $r.existingSecret }}
      key: {{ $r.existingSecretUrlKey }}
{{- else }}
- name: TGFED_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $r.existingSecret }}
      key: {{ $r.existingSecretPasswordKey }}
{{- end }}
{{- end }}
{{- end }}

{{/* The probes of a component on its named "health" port. */}}
{{- define "tgfed-hub.probes" -}}
livenessProbe:
  httpGet:
    path: /livez
    port: health
  {{- toYaml .Values.livenessProbe | nindent 2 }}
readinessProbe:
  httpGet:
    path: /readyz
    port: health
  {{- toYaml .Values.readinessProbe | nindent 2 }}
{{- end }}

{{/* Default topology spread of a component: over nodes and zones, as far as possible. */}}
{{- define "tgfed-hub.topologySpread" -}}
{{- $ctx := index . 0 -}}
{{- $custom := index . 2 }}
{{- if $custom }}
{{- toYaml $custom }}
{{- else }}
{{- range $key := list "kubernetes.io/hostname" "topology.kubernetes.io/zone" }}
- maxSkew: 1
  topologyKey: {{ $key }}
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "tgfed-hub.selectorLabels" (list $ctx (index $ 1)) | nindent 6 }}
{{- end }}
{{- end }}
{{- end }}
