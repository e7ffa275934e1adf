{{/* Name of the chart, or nameOverride. */}}
{{- define "interlink.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name of the release's objects. */}}
{{- define "interlink.fullname" -}}
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

{{/* Name of the virtual node. */}}
{{- define "interlink.nodeName" -}}
{{- default (include "interlink.fullname" .) .Values.nodeName -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "interlink.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "interlink.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: interlink
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels selecting the VK's pod. */}}
{{- define "interlink.selectorLabels" -}}
app.kubernetes.io/name: {{ include "interlink.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The VK's ServiceAccount. */}}
{{- define "interlink.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "interlink.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* image DICT ROOT: repository:tag, the tag defaulting to appVersion. */}}
{{- define "interlink.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{/* The Secret and key of the VK's token, or nothing for the refresher. */}}
{{- define "interlink.tokenSecret" -}}
{{- if .Values.token.existingSecret -}}
{{- .Values.token.existingSecret -}}
{{- else if .Values.inCluster.enabled -}}
{{- printf "%s-token" (include "interlink.fullname" .) -}}
{{- end -}}
{{- end -}}
{{- define "interlink.tokenSecretKey" -}}
{{- if .Values.token.existingSecret -}}
{{- .Values.token.existingSecretKey -}}
{{- else -}}
token
{{- end -}}
{{- end -}}

{{/* Whether a Prometheus scrapes the pod (interLink then listens beyond loopback). */}}
{{- define "interlink.scraped" -}}
{{- if or .Values.monitoring.serviceMonitor.enabled .Values.monitoring.podMonitor.enabled -}}true{{- end -}}
{{- end -}}

{{/* How interLink and the sidecar reach each other in in-cluster mode: the socket's directory, or the sidecar token. */}}
{{- define "interlink.sidecarMount" -}}
{{- if .Values.inCluster.sidecar.port -}}
- name: sidecar-token
  mountPath: /var/run/interlink/sidecar-token
  readOnly: true
{{- else -}}
- name: sidecar-socket
  mountPath: /var/run/interlink/sidecar
{{- end -}}
{{- end -}}

{{/* Cross-field checks the schema cannot express, with clear messages. */}}
{{- define "interlink.validate" -}}
{{- if and (not .Values.inCluster.enabled) (not .Values.interlink.url) -}}
{{- fail "interlink.url is required: the URL of the remote interLink (or set inCluster.enabled=true)" -}}
{{- end -}}
{{- if and (not .Values.inCluster.enabled) (not .Values.token.existingSecret) (not .Values.token.refresher.enabled) -}}
{{- fail "the VK needs a token for the remote interLink: set token.existingSecret or token.refresher.enabled=true" -}}
{{- end -}}
{{- if and .Values.inCluster.enabled .Values.token.existingSecret -}}
{{- fail "token.existingSecret is for remote mode: in in-cluster mode interLink accepts only the chart's generated token (or, with token.refresher, OIDC tokens); unset token.existingSecret" -}}
{{- end -}}
{{- if and .Values.inCluster.enabled .Values.token.refresher.enabled (not (dig "Auth" "Issuers" list .Values.inCluster.interlink.config)) -}}
{{- fail "token.refresher in in-cluster mode needs inCluster.interlink.config.Auth.Issuers (and Audiences): interLink must accept the refresher's OIDC tokens" -}}
{{- end -}}
{{- if .Values.token.refresher.enabled -}}
{{- if or (not .Values.token.refresher.tokenURL) (not .Values.token.refresher.clientID) -}}
{{- fail "token.refresher.enabled needs token.refresher.tokenURL and token.refresher.clientID" -}}
{{- end -}}
{{- if and (eq .Values.token.refresher.grant "refresh_token") (not .Values.token.refresher.refreshToken.existingSecret) -}}
{{- fail "token.refresher.grant=refresh_token needs token.refresher.refreshToken.existingSecret" -}}
{{- end -}}
{{- end -}}
{{- if and (eq .Values.kubeletCert.mode "files") (not .Values.kubeletCert.existingSecret) -}}
{{- fail "kubeletCert.mode=files needs kubeletCert.existingSecret (a kubernetes.io/tls Secret)" -}}
{{- end -}}
{{- end -}}
