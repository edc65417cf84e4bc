{{/* The chart's name, at most 63 characters (a DNS label). */}}
{{- define "alarm-bridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name; the release name alone when it already contains the chart's name. */}}
{{- define "alarm-bridge.fullname" -}}
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

{{- define "alarm-bridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "alarm-bridge.labels" -}}
helm.sh/chart: {{ include "alarm-bridge.chart" . }}
{{ include "alarm-bridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "alarm-bridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "alarm-bridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "alarm-bridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "alarm-bridge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "alarm-bridge.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* The Secret the chart creates from .Values.secret.env, when it creates one. */}}
{{- define "alarm-bridge.secretName" -}}
{{- printf "%s-env" (include "alarm-bridge.fullname" .) }}
{{- end }}

{{/* The folder the gateway reads its templates from; template files from values are laid over it. */}}
{{- define "alarm-bridge.templatesDir" -}}
{{- .Values.config.templates | default "/app/templates" | trimSuffix "/" }}
{{- end }}

{{/* A ConfigMap key for a file path (keys allow no "/"). */}}
{{- define "alarm-bridge.fileKey" -}}
{{- printf "%s.%s" (index . 0) (index . 1 | replace "/" "__") }}
{{- end }}

{{/*
Several replicas share dedup claims, tokens and groups only through Redis: SQLite is one process's file.
values.schema.json says the same, so `helm lint` catches it too (lint does not stop at `fail`).
*/}}
{{- define "alarm-bridge.validate" -}}
{{- $url := dig "store" "url" "" .Values.config | toString }}
{{- if and (gt (int .Values.replicaCount) 1) (not (regexMatch "^rediss?(\\+sentinel)?://" $url)) }}
{{- fail (printf "replicaCount is %d, but config.store.url is %q: more than one replica needs a shared Redis store (config.store.url: redis://HOST:6379/0)" (int .Values.replicaCount) $url) }}
{{- end }}
{{- if and .Values.persistence.enabled (gt (int .Values.replicaCount) 1) }}
{{- fail "persistence.enabled is for the single-replica SQLite store; with several replicas the state lives in Redis" }}
{{- end }}
{{- end }}
