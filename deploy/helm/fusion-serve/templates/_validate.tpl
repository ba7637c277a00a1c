{{/*
Values the chart cannot render sensibly, refused with what to set instead. Included by the
Deployment, which every install renders.
*/}}
{{- define "fusion-serve.validate" -}}
{{- $claim := .Values.library.persistentVolumeClaim.claimName }}
{{- if and .Values.library.url $claim }}
{{- fail "set library.url or library.persistentVolumeClaim.claimName, not both" }}
{{- else if not (or .Values.library.url $claim) }}
{{- fail "no library: set library.url (s3://bucket/prefix, shared by every replica) or library.persistentVolumeClaim.claimName (a folder, served by one pod)" }}
{{- else if and .Values.library.url (not (hasPrefix "s3://" .Values.library.url)) }}
{{- fail "library.url must be an s3://bucket/prefix URL; a library folder comes from library.persistentVolumeClaim.claimName" }}
{{- end }}
{{- if $claim }}
{{- /* Only one server may write to a library folder (README: Admin API), and each server writes to it at start. */}}
{{- $single := list }}
{{- if gt (int .Values.replicaCount) 1 }}{{ $single = append $single "replicaCount=1" }}{{ end }}
{{- if .Values.autoscaling.enabled }}{{ $single = append $single "autoscaling.enabled=false" }}{{ end }}
{{- if .Values.podDisruptionBudget.enabled }}{{ $single = append $single "podDisruptionBudget.enabled=false (a budget of one pod out of one blocks every node drain)" }}{{ end }}
{{- with $single }}
{{- fail (printf "a library on library.persistentVolumeClaim is a folder, which only one server may write, so it is served by one pod: set %s; replicas share a library on object storage (library.url)" (join ", " .)) }}
{{- end }}
{{- end }}
{{- if and .Values.admin.enabled (not .Values.admin.existingSecret) (lt (len .Values.admin.token) 16) }}
{{- fail "admin.enabled needs admin.existingSecret, or admin.token of at least 16 characters" }}
{{- end }}
{{- /* An env entry for a variable the chart sets would give the container that variable twice. */}}
{{- $owned := dict "HOST" "the probes and the Service use 0.0.0.0:8080" "PORT" "the probes and the Service use 0.0.0.0:8080"
  "FUSION_LIBRARY" "from library.url or library.persistentVolumeClaim" "FUSION_LIBRARY_POLL_MS" "from library.pollMs" "FUSION_LIBRARY_CONSISTENCY" "from library.consistency"
  "FUSION_LIBRARY_CACHE" "an emptyDir of library.cacheSizeLimit" "FUSION_THREADS" "from server.threads or the CPU resources"
  "FUSION_DRAIN_SECONDS" "from shutdown.drainSeconds" "FUSION_SHUTDOWN_TIMEOUT_MS" "from shutdown.timeoutSeconds"
  "AWS_REGION" "from s3.region" "AWS_ENDPOINT_URL" "from s3.endpoint" "FUSION_S3_PATH_STYLE" "from s3.pathStyle" "FUSION_S3_TIMEOUT_MS" "from s3.timeoutMs"
  "AWS_ACCESS_KEY_ID" "from s3.existingSecret or s3.accessKeyId" "AWS_SECRET_ACCESS_KEY" "from s3.existingSecret or s3.secretAccessKey"
  "ADMIN_TOKEN" "from admin.existingSecret or admin.token" }}
{{- range $name, $_ := .Values.env }}
{{- if hasKey $owned $name }}
{{- fail (printf "env.%s is set by the chart (%s)" $name (get $owned $name)) }}
{{- end }}
{{- end }}
{{- end -}}
