{{/* The chart's name, overridable with nameOverride. */}}
{{- define "wheelwell.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object names: <release>-wheelwell, or the release name alone if it already holds the chart's. */}}
{{- define "wheelwell.fullname" -}}
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

{{- define "wheelwell.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "wheelwell.labels" -}}
helm.sh/chart: {{ include "wheelwell.chart" . }}
{{ include "wheelwell.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels the Services, the NetworkPolicy and the ServiceMonitor select the pod by. */}}
{{- define "wheelwell.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wheelwell.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The image, its tag defaulting to the chart's appVersion. */}}
{{- define "wheelwell.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* The Secret holding root's password: the operator's, or the one the chart creates. */}}
{{- define "wheelwell.secretName" -}}
{{- .Values.rootPassword.existingSecret | default (printf "%s-root" (include "wheelwell.fullname" .)) }}
{{- end }}

{{- define "wheelwell.secretKey" -}}
{{- if .Values.rootPassword.existingSecret }}
{{- .Values.rootPassword.existingSecretKey }}
{{- else -}}
password
{{- end }}
{{- end }}

{{/* The Secret holding the replication secret: the operator's, or the one the chart creates. */}}
{{- define "wheelwell.replicationSecretName" -}}
{{- .Values.replication.existingSecret | default (printf "%s-replication" (include "wheelwell.fullname" .)) }}
{{- end }}

{{- define "wheelwell.replicationSecretKey" -}}
{{- if .Values.replication.existingSecret }}
{{- .Values.replication.existingSecretKey }}
{{- else -}}
secret
{{- end }}
{{- end }}

{{/* Where replicas follow the primary and relay writes: the Service that selects pod 0. */}}
{{- define "wheelwell.primaryUrl" -}}
{{- printf "http://%s-primary:%v" (include "wheelwell.fullname" .) .Values.service.port }}
{{- end }}
