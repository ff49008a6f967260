{{/* Names and labels shared by every object of the chart. */}}

{{- define "digi.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "digi.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "digi.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "digi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: digi
{{- end -}}

{{- define "digi.selectorLabels" -}}
app.kubernetes.io/name: {{ include "digi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "digi.manager.selectorLabels" -}}
{{ include "digi.selectorLabels" . }}
app.kubernetes.io/component: manager
{{- end -}}

{{- define "digi.lake.selectorLabels" -}}
{{ include "digi.selectorLabels" . }}
app.kubernetes.io/component: lake
{{- end -}}

{{- define "digi.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "digi.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "digi.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "digi.lakeUrl" -}}
{{- if .Values.lake.enabled -}}
{{- printf "http://%s-lake.%s.svc:%d" (include "digi.fullname" .) .Release.Namespace (int .Values.lake.port) -}}
{{- else -}}
{{- .Values.lake.externalUrl -}}
{{- end -}}
{{- end -}}

{{/* Where workers reach the manager's HTTP API (the kubernetes backend's pods). */}}
{{- define "digi.managerUrl" -}}
{{- printf "http://%s.%s.svc:%d" (include "digi.fullname" .) .Release.Namespace (int .Values.service.httpPort) -}}
{{- end -}}

{{- define "digi.webhookServiceName" -}}
{{- printf "%s-webhook" (include "digi.fullname" .) -}}
{{- end -}}

{{- define "digi.webhookSecretName" -}}
{{- printf "%s-webhook-tls" (include "digi.fullname" .) -}}
{{- end -}}

{{/* The role name a kind's ClusterRole is aggregated into (see README.md). */}}
{{- define "digi.aggregationLabel" -}}
digi.dev/aggregate-to-manager
{{- end -}}

{{/*
The webhook's CA and serving certificate when webhook.certificate.source is
"helm", as JSON {ca, crt, key} (base64 PEM). An installed release's Secret is
reused, so `helm upgrade` keeps the certificate; otherwise Helm generates one.
Generated once per render (memoised in .Values) so the Secret, the caBundle
and the Deployment's checksum all see the same certificate.
*/}}
{{- define "digi.webhookCerts" -}}
{{- if not (hasKey .Values "__webhookCerts") -}}
{{- $secret := lookup "v1" "Secret" .Release.Namespace (include "digi.webhookSecretName" .) -}}
{{- $certs := dict -}}
{{- if and $secret (hasKey ($secret.data | default dict) "ca.crt") -}}
{{- $certs = dict "ca" (index $secret.data "ca.crt") "crt" (index $secret.data "tls.crt") "key" (index $secret.data "tls.key") -}}
{{- else -}}
{{- $service := include "digi.webhookServiceName" . -}}
{{- $days := int .Values.webhook.certificate.validityDays -}}
{{- $ca := genCA (printf "%s-webhook-ca" (include "digi.fullname" .)) $days -}}
{{- $dns := list $service (printf "%s.%s" $service .Release.Namespace) (printf "%s.%s.svc" $service .Release.Namespace) (printf "%s.%s.svc.cluster.local" $service .Release.Namespace) -}}
{{- $cert := genSignedCert (printf "%s.%s.svc" $service .Release.Namespace) nil $dns $days $ca -}}
{{- $certs = dict "ca" ($ca.Cert | b64enc) "crt" ($cert.Cert | b64enc) "key" ($cert.Key | b64enc) -}}
{{- end -}}
{{- $_ := set .Values "__webhookCerts" $certs -}}
{{- end -}}
{{- toJson (get .Values "__webhookCerts") -}}
{{- end -}}
