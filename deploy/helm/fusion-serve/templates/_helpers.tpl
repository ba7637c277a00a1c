{{- define "fusion-serve.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fusion-serve.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "fusion-serve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fusion-serve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "fusion-serve.labels" -}}
{{ include "fusion-serve.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "fusion-serve.adminSecret" -}}
{{- default (printf "%s-admin" (include "fusion-serve.fullname" .)) .Values.admin.existingSecret -}}
{{- end -}}

{{- define "fusion-serve.s3Secret" -}}
{{- default (printf "%s-s3" (include "fusion-serve.fullname" .)) .Values.s3.existingSecret -}}
{{- end -}}

{{- define "fusion-serve.s3Credentials" -}}
{{- or .Values.s3.existingSecret .Values.s3.accessKeyId -}}
{{- end -}}

{{- define "fusion-serve.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fusion-serve.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
Intra-op threads of the forward pass (FUSION_THREADS). ONNX Runtime sizes its pool by the cores it
sees, and in a container those are the node's, not the pod's share: a pod with 2 CPUs on a 64-core
node would run dozens of threads on two cores' quota, throttled mid-pass. So: server.threads when
set, else the CPU limit, else the CPU request (a Kubernetes quantity: "2", 1.5, "1500m"), rounded
down, at least 1; nothing when the pod has neither, and ONNX Runtime takes every core.
*/}}
{{- define "fusion-serve.threads" -}}
{{- $set := .Values.server.threads -}}
{{- if and (not (kindIs "invalid" $set)) (ne (toString $set) "") -}}
{{- if not (regexMatch "^[0-9]+$" (toString $set)) -}}
{{- fail (printf "server.threads must be a whole number of threads (0: one per core), not %q" (toString $set)) -}}
{{- end -}}
{{- toString $set -}}
{{- else -}}
{{- $resources := .Values.resources | default dict -}}
{{- $cpu := get ($resources.limits | default dict) "cpu" | default (get ($resources.requests | default dict) "cpu") | default "" | toString -}}
{{- if regexMatch "^[0-9]+m$" $cpu -}}
{{- max 1 (div (trimSuffix "m" $cpu | atoi) 1000) -}}
{{- else if regexMatch "^([0-9]+\\.?[0-9]*|\\.[0-9]+)$" $cpu -}}
{{- max 1 ($cpu | float64 | floor | int) -}}
{{- else if ne $cpu "" -}}
{{- fail (printf "cannot derive the forward pass's threads from the CPU quantity %q: write it in cores (\"2\", 1.5) or millicores (\"1500m\"), or set server.threads" $cpu) -}}
{{- end -}}
{{- end -}}
{{- end -}}
