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
