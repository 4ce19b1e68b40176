{{/* Names and labels. */}}
{{- define "spendgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "spendgate.fullname" -}}
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

{{- define "spendgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spendgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "spendgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "spendgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "spendgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "spendgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "spendgate.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret the chart creates for URLs and keys given in values. */}}
{{- define "spendgate.secretName" -}}
{{- printf "%s-secrets" (include "spendgate.fullname" .) }}
{{- end }}

{{/* Is a PostgreSQL (external) database configured, by URL or by an existing Secret? */}}
{{- define "spendgate.externalDatabase" -}}
{{- if or .Values.database.url .Values.database.existingSecret.name }}true{{ end }}
{{- end }}

{{- define "spendgate.redis" -}}
{{- if or .Values.redis.url .Values.redis.existingSecret.name }}true{{ end }}
{{- end }}

{{- define "spendgate.adminKey" -}}
{{- if or .Values.admin.key .Values.admin.existingSecret.name }}true{{ end }}
{{- end }}

{{/* An env var read from the given existing Secret, or from the chart's Secret. */}}
{{- define "spendgate.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      {{- if .existing.name }}
      name: {{ .existing.name }}
      key: {{ .existing.key }}
      {{- else }}
      name: {{ include "spendgate.secretName" .root }}
      key: {{ .key }}
      {{- end }}
{{- end }}

{{/* The env every spendgate container gets: database, Redis and admin secrets. */}}
{{- define "spendgate.env" -}}
{{- if include "spendgate.externalDatabase" . }}
{{ include "spendgate.secretEnv" (dict "root" . "env" "SPENDGATE_DATABASE_URL" "existing" .Values.database.existingSecret "key" "database-url") }}
{{- end }}
{{- if include "spendgate.redis" . }}
{{ include "spendgate.secretEnv" (dict "root" . "env" "SPENDGATE_REDIS_URL" "existing" .Values.redis.existingSecret "key" "redis-url") }}
{{- end }}
{{- if include "spendgate.adminKey" . }}
{{ include "spendgate.secretEnv" (dict "root" . "env" "SPENDGATE_ADMIN_KEY" "existing" .Values.admin.existingSecret "key" "admin-key") }}
{{- end }}
{{- range $name, $_ := .Values.providerKeys }}
{{ include "spendgate.secretEnv" (dict "root" $ "env" $name "existing" (dict) "key" $name) }}
{{- end }}
{{- end }}

{{/* The whole spendgate.yaml: the user's `config` plus the keys the chart manages. */}}
{{- define "spendgate.config" -}}
{{- $server := dict
  "host" "0.0.0.0"
  "port" (int .Values.service.targetPort)
  "workers" (int .Values.workers)
  "shutdown" (dict
    "drain_seconds" .Values.shutdown.drainSeconds
    "grace_seconds" .Values.shutdown.graceSeconds
    "flush_seconds" .Values.shutdown.flushSeconds
    "new_requests" .Values.shutdown.newRequests) -}}
{{- $storage := dict "spill_path" (printf "%s/ledger-spill-${POD_NAME}.jsonl" .Values.spill.mountPath) -}}
{{- if include "spendgate.externalDatabase" . }}
{{- $_ := set $storage "database_url" "${SPENDGATE_DATABASE_URL}" }}
{{- else }}
{{- $_ := set $storage "database_url" (printf "sqlite:///%s/spendgate.db" .Values.spill.mountPath) }}
{{- end }}
{{- if include "spendgate.redis" . }}
{{- $_ := set $storage "redis_url" "${SPENDGATE_REDIS_URL}" }}
{{- end }}
{{- $managed := dict "server" $server "storage" (merge $storage (.Values.config.storage | default dict)) -}}
{{- if include "spendgate.adminKey" . }}
{{- $_ := set $managed "admin" (dict "key" "${SPENDGATE_ADMIN_KEY}") }}
{{- end }}
{{- toYaml (merge $managed (omit .Values.config "storage")) }}
{{- end }}

{{/* Seconds a pod may take to stop: preStop + drain + grace + flush, plus a margin. */}}
{{- define "spendgate.terminationGracePeriodSeconds" -}}
{{- if .Values.terminationGracePeriodSeconds }}
{{- .Values.terminationGracePeriodSeconds }}
{{- else }}
{{- $s := .Values.shutdown }}
{{- add $s.preStopSleepSeconds $s.drainSeconds $s.graceSeconds $s.flushSeconds 5 }}
{{- end }}
{{- end }}
