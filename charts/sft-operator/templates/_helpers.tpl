{{/* Chart name, overridable. */}}
{{- define "sft-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped full name, max 63 chars (DNS label). */}}
{{- define "sft-operator.fullname" -}}
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

{{- define "sft-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sft-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sft-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sft-operator.labels" -}}
helm.sh/chart: {{ include "sft-operator.chart" . }}
{{ include "sft-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sft-operator
{{- end }}

{{- define "sft-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sft-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* An image reference from {repository, tag, digest}: the digest wins, the tag defaults to appVersion. */}}
{{- define "sft-operator.imageRef" -}}
{{- $image := index . 0 }}
{{- $root := index . 1 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/* Watched namespaces as a list; empty when cluster-wide. */}}
{{- define "sft-operator.watchNamespaces" -}}
{{- if .Values.watch.clusterWide }}
{{- list | toJson }}
{{- else }}
{{- .Values.watch.namespaces | uniq | toJson }}
{{- end }}
{{- end }}

{{/* The operator's RBAC rules, split by scope; generated from manifests/rbac.yaml (charts/sync_chart.py). */}}
{{- define "sft-operator.operatorRules" -}}
{{- .Files.Get "files/operator-rules.yaml" }}
{{- end }}
