{{/* Names: <release>-sweetspot unless the release name already says sweetspot; 63 characters at most. */}}
{{- define "sweetspot.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains "sweetspot" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-sweetspot" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sweetspot.selectorLabels" -}}
app.kubernetes.io/name: sweetspot
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sweetspot.labels" -}}
{{ include "sweetspot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "sweetspot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sweetspot.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository:tag, or repository@digest when a digest is given (it wins over the tag). */}}
{{- define "sweetspot.image" -}}
{{- $image := .Values.image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The namespaces the operator watches: the listed ones, or the release namespace (namespaced scope only). */}}
{{- define "sweetspot.watchNamespaces" -}}
{{- if .Values.rbac.watchNamespaces -}}
{{- toJson .Values.rbac.watchNamespaces -}}
{{- else -}}
{{- toJson (list .Release.Namespace) -}}
{{- end -}}
{{- end -}}

{{/* Where the operator's default storage URL comes from: name and key of a Secret. */}}
{{- define "sweetspot.databaseSecret" -}}
{{- $db := .Values.database -}}
{{- if $db.dev.enabled -}}
{{- dict "name" (printf "%s-database" (include "sweetspot.fullname" .)) "key" "url" | toJson -}}
{{- else if $db.cloudnativepg.enabled -}}
{{- dict "name" (printf "%s-app" (include "sweetspot.cnpgName" .)) "key" "uri" | toJson -}}
{{- else if $db.existingSecret.name -}}
{{- dict "name" $db.existingSecret.name "key" $db.existingSecret.key | toJson -}}
{{- else -}}
{{- dict | toJson -}}
{{- end -}}
{{- end -}}

{{- define "sweetspot.cnpgName" -}}
{{- printf "%s-db" (include "sweetspot.fullname" .) | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{/* The restricted Pod Security profile, for every container the chart runs. */}}
{{- define "sweetspot.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
