{{/*
Expand the name of the chart.
*/}}
{{- define "stock-trading.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "stock-trading.fullname" -}}
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

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "stock-trading.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "stock-trading.labels" -}}
helm.sh/chart: {{ include "stock-trading.chart" . }}
{{ include "stock-trading.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ include "stock-trading.name" . }}
{{- end }}

{{/*
Selector labels
*/}}
{{- define "stock-trading.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stock-trading.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels and selector labels of one component (web, migrate, report, sweep, tokens).
Every workload selects on its component, so the Service, the PDB and the HPA
only ever see web pods. Call with (dict "context" $ "component" "web").
*/}}
{{- define "stock-trading.componentLabels" -}}
{{ include "stock-trading.labels" .context }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "stock-trading.componentSelectorLabels" -}}
{{ include "stock-trading.selectorLabels" .context }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Create the name of the service account to use
*/}}
{{- define "stock-trading.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "stock-trading.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The container image.
*/}}
{{- define "stock-trading.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
Name of the Secret the pods read: the existing one, or the chart's.
*/}}
{{- define "stock-trading.secretName" -}}
{{- .Values.secret.existingSecret | default (include "stock-trading.fullname" .) }}
{{- end }}

{{/*
Whether the migration Job runs as a Helm hook ("true" or "").
*/}}
{{- define "stock-trading.migrationHook" -}}
{{- if and .Values.migrations.enabled .Values.migrations.hook }}true{{ end }}
{{- end }}

{{/*
ConfigMap data: the non-empty settings. Shared by the ConfigMap, its hook copy
for the migration and the checksum annotation that rolls the web pods.
*/}}
{{- define "stock-trading.configData" -}}
{{- range $key, $value := .Values.config }}
{{- if ne (toString $value) "" }}
{{ $key }}: {{ toString $value | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Secret data: the non-empty secret values, base64-encoded.
*/}}
{{- define "stock-trading.secretData" -}}
{{- range $key, $value := .Values.secret.values }}
{{- if $value }}
{{ $key }}: {{ toString $value | b64enc | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Hook annotations for the objects the migration hook needs before the release's
own ConfigMap and Secret exist. Call with (dict "weight" "-10").
*/}}
{{- define "stock-trading.hookAnnotations" -}}
helm.sh/hook: pre-install,pre-upgrade
helm.sh/hook-weight: {{ .weight | quote }}
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end }}

{{/*
Pod-level fields shared by every pod of the chart (web, migration, jobs).
*/}}
{{- define "stock-trading.podCommon" -}}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Container fields shared by every container of the chart: image, hardened
security context, settings from the ConfigMap and the Secret.
Call with (dict "context" $ "configName" NAME "secretName" NAME).
*/}}
{{- define "stock-trading.containerCommon" -}}
{{- $ := .context -}}
image: {{ include "stock-trading.image" $ | quote }}
imagePullPolicy: {{ $.Values.image.pullPolicy }}
{{- with $.Values.securityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
envFrom:
  - configMapRef:
      name: {{ .configName }}
  - secretRef:
      name: {{ .secretName }}
{{- end }}

{{/*
Volume mounts every container has: a writable /tmp (the root filesystem is
read-only) and the extra mounts.
*/}}
{{- define "stock-trading.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "stock-trading.volumes" -}}
- name: tmp
  emptyDir: {}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Pod template of a one-shot job (migration, CronJobs).
Call with (dict "context" $ "component" NAME "command" LIST "resources" MAP
"serviceAccountName" NAME "configName" NAME "secretName" NAME).
*/}}
{{- define "stock-trading.jobPodTemplate" -}}
{{- $ := .context -}}
metadata:
  labels:
    {{- include "stock-trading.componentLabels" . | nindent 4 }}
    {{- with $.Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $.Values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  restartPolicy: Never
  serviceAccountName: {{ .serviceAccountName }}
  {{- include "stock-trading.podCommon" $ | nindent 2 }}
  containers:
    - name: {{ .component }}
      {{- include "stock-trading.containerCommon" . | nindent 6 }}
      command:
        {{- toYaml .command | nindent 8 }}
      {{- with .resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        {{- include "stock-trading.volumeMounts" $ | nindent 8 }}
  volumes:
    {{- include "stock-trading.volumes" $ | nindent 4 }}
{{- end }}

{{/*
Labels of one alert: its severity and metrics.prometheusRule.alertLabels.
Call with (dict "severity" "warning" "extra" MAP).
*/}}
{{- define "stock-trading.alertLabels" -}}
severity: {{ .severity }}
{{- with .extra }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Environment of the web container for auth.* (nothing with mode none). Only the
web pods get it: the jobs never authenticate, so an auth mistake cannot stop them.
*/}}
{{- define "stock-trading.authEnv" -}}
{{- with .Values.auth }}
{{- if eq .mode "jwt" }}
- name: AUTH_MODE
  value: "jwt"
- name: AUTH_ISSUER
  value: {{ required "auth.issuer is required when auth.mode is jwt" .issuer | quote }}
- name: AUTH_AUDIENCE
  value: {{ required "auth.audience is required when auth.mode is jwt" .audience | quote }}
- name: AUTH_USER_CLAIM
  value: {{ .userClaim | quote }}
- name: AUTH_ALGORITHMS
  value: {{ join "," .algorithms | quote }}
{{- if .jwksUrl }}
- name: AUTH_JWKS_URL
  value: {{ .jwksUrl | quote }}
{{- else }}
- name: AUTH_JWT_PUBLIC_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "stock-trading.authSecretName" $ }}
      key: {{ if .existingPublicKeySecret.name }}{{ .existingPublicKeySecret.key }}{{ else }}public-key.pem{{ end }}
{{- end }}
{{- with .userRateLimit }}
- name: USER_RATE_LIMIT
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The Secret with the PEM public key: the existing one, or the one the chart
creates from auth.publicKey.
*/}}
{{- define "stock-trading.authSecretName" -}}
{{- .Values.auth.existingPublicKeySecret.name | default (printf "%s-auth" (include "stock-trading.fullname" .)) }}
{{- end }}
