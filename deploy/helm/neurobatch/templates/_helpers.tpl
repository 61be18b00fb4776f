{{/*
Names, labels and the pieces every pod of the chart shares: the configuration file, the
secrets mounted as files (read through NEUROBATCH__…__FILE), the S3 credentials and the
environment the chart owns.
*/}}

{{- define "neurobatch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "neurobatch.fullname" -}}
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

{{- define "neurobatch.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of one component: include with (dict "root" $ "component" "worker"). */}}
{{- define "neurobatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "neurobatch.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "neurobatch.labels" -}}
helm.sh/chart: {{ include "neurobatch.chart" .root }}
{{ include "neurobatch.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: neurobatch
{{- end -}}

{{- define "neurobatch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "neurobatch.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The image of a role: worker.gpu.enabled switches the workers to the CUDA image. */}}
{{- define "neurobatch.image" -}}
{{- $img := .root.Values.image -}}
{{- if and (eq .component "worker") .root.Values.worker.gpu.enabled -}}
{{- $img = .root.Values.worker.gpu.image -}}
{{- end -}}
{{- printf "%s:%s" $img.repository (default .root.Chart.AppVersion $img.tag) -}}
{{- end -}}

{{/* ---- Secrets: names and keys, the chart's own or the operator's existing ones ---- */}}

{{- define "neurobatch.databaseSecretName" -}}
{{- default (printf "%s-database" (include "neurobatch.fullname" .)) .Values.database.existingSecret -}}
{{- end -}}

{{- define "neurobatch.databaseSecretKey" -}}
{{- if .Values.database.existingSecret -}}{{ .Values.database.existingSecretKey }}{{- else -}}url{{- end -}}
{{- end -}}

{{- define "neurobatch.brokerSecretName" -}}
{{- default (printf "%s-broker" (include "neurobatch.fullname" .)) .Values.broker.existingSecret -}}
{{- end -}}

{{- define "neurobatch.brokerUrlKey" -}}
{{- if .Values.broker.existingSecret -}}{{ .Values.broker.existingSecretUrlKey }}{{- else -}}url{{- end -}}
{{- end -}}

{{- define "neurobatch.brokerManagementUrlKey" -}}
{{- if .Values.broker.existingSecret -}}{{ .Values.broker.existingSecretManagementUrlKey }}{{- else -}}managementUrl{{- end -}}
{{- end -}}

{{- define "neurobatch.s3SecretName" -}}
{{- default (printf "%s-s3" (include "neurobatch.fullname" .)) .Values.s3.existingSecret -}}
{{- end -}}

{{- define "neurobatch.s3AccessKeyIdKey" -}}
{{- if .Values.s3.existingSecret -}}{{ .Values.s3.existingSecretAccessKeyIdKey }}{{- else -}}accessKeyId{{- end -}}
{{- end -}}

{{- define "neurobatch.s3SecretAccessKeyKey" -}}
{{- if .Values.s3.existingSecret -}}{{ .Values.s3.existingSecretSecretAccessKeyKey }}{{- else -}}secretAccessKey{{- end -}}
{{- end -}}

{{/* Fails the render early, with the value to set, when a required secret is missing. */}}
{{- define "neurobatch.validate" -}}
{{- if and (not .Values.database.existingSecret) (not .Values.database.url) -}}
{{- fail "neurobatch: set database.url (postgres://USER:PASSWORD@HOST:5432/DB) or database.existingSecret" -}}
{{- end -}}
{{- if and (not .Values.broker.existingSecret) (not .Values.broker.url) -}}
{{- fail "neurobatch: set broker.url (amqp://USER:PASSWORD@HOST:5672/VHOST) or broker.existingSecret" -}}
{{- end -}}
{{- if and .Values.keda.enabled (eq .Values.keda.protocol "http") (not .Values.broker.existingSecret) (not .Values.broker.managementUrl) -}}
{{- fail "neurobatch: keda.protocol is http: set broker.managementUrl (http://USER:PASSWORD@HOST:15672/VHOST) or use broker.existingSecret" -}}
{{- end -}}
{{- if not (has .Values.keda.protocol (list "http" "amqp")) -}}
{{- fail (printf "neurobatch: keda.protocol must be http or amqp, not %q" .Values.keda.protocol) -}}
{{- end -}}
{{- if and .Values.s3.credentials (not .Values.s3.existingSecret) (or (not .Values.s3.accessKeyId) (not .Values.s3.secretAccessKey)) -}}
{{- fail "neurobatch: s3.credentials is true: set s3.accessKeyId and s3.secretAccessKey, or s3.existingSecret (or s3.credentials=false for instance roles / IRSA)" -}}
{{- end -}}
{{- if not (hasPrefix "s3://" (toString .Values.config.storage.url)) -}}
{{- fail (printf "neurobatch: config.storage.url must be s3://BUCKET/PREFIX in a cluster (pods share no disk), not %q" (toString .Values.config.storage.url)) -}}
{{- end -}}
{{- end -}}

{{/*
TOML from the `config` block: one table per section, in the key order of
config/neurobatch.toml's sections (sorted by Go templates anyway). Helm reads every YAML number
as a float, so whole numbers are written as integers: every numeric key of neurobatch's
configuration is an integer (docs/daemon.md).
*/}}
{{- define "neurobatch.tomlValue" -}}
{{- if kindIs "string" . -}}
{{- toJson . -}}
{{- else if kindIs "bool" . -}}
{{- ternary "true" "false" . -}}
{{- else if or (kindIs "float64" .) (kindIs "int" .) (kindIs "int64" .) -}}
{{- if eq (float64 .) (floor .) -}}{{- int64 . -}}{{- else -}}{{- . -}}{{- end -}}
{{- else if kindIs "slice" . -}}
[{{- range $i, $v := . -}}{{- if $i -}}, {{ end -}}{{- include "neurobatch.tomlValue" $v -}}{{- end -}}]
{{- else if kindIs "invalid" . -}}
{{- fail "neurobatch: a config value is null; remove the key to keep the default" -}}
{{- else -}}
{{- fail (printf "neurobatch: config values must be strings, numbers, booleans or lists, not %s" (kindOf .)) -}}
{{- end -}}
{{- end -}}

{{- define "neurobatch.toml" -}}
# Rendered by the neurobatch chart from .Values.config. Secrets are not here: the database
# and broker URLs come from files (NEUROBATCH__…__FILE), S3 credentials from the environment.
{{- range $section, $keys := .Values.config }}
{{- if not (kindIs "map" $keys) }}
{{- fail (printf "neurobatch: config.%s must be a table of keys" $section) }}
{{- end }}
{{- if hasKey $keys "url" }}
{{- if has $section (list "database" "queue") }}
{{- fail (printf "neurobatch: config.%s.url holds a password: set it with %s instead" $section (ternary "database.url / database.existingSecret" "broker.url / broker.existingSecret" (eq $section "database"))) }}
{{- end }}
{{- end }}

[{{ $section }}]
{{- range $key, $value := $keys }}
{{ $key }} = {{ include "neurobatch.tomlValue" $value }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Environment the chart owns, shared by the scheduler, the workers and the migration job. */}}
{{- define "neurobatch.env" -}}
- name: NEUROBATCH__DATABASE__URL__FILE
  value: /var/run/secrets/neurobatch/database/url
- name: NEUROBATCH__QUEUE__URL__FILE
  value: /var/run/secrets/neurobatch/broker/url
{{- if .Values.s3.credentials }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ include "neurobatch.s3SecretName" . }}
      key: {{ include "neurobatch.s3AccessKeyIdKey" . }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "neurobatch.s3SecretName" . }}
      key: {{ include "neurobatch.s3SecretAccessKeyKey" . }}
{{- end }}
- name: TMPDIR
  value: /tmp
{{- end -}}

{{- define "neurobatch.secretVolumes" -}}
- name: database-secret
  secret:
    secretName: {{ include "neurobatch.databaseSecretName" . }}
    defaultMode: 0440
    items:
      - key: {{ include "neurobatch.databaseSecretKey" . }}
        path: url
- name: broker-secret
  secret:
    secretName: {{ include "neurobatch.brokerSecretName" . }}
    defaultMode: 0440
    items:
      - key: {{ include "neurobatch.brokerUrlKey" . }}
        path: url
{{- end -}}

{{- define "neurobatch.secretVolumeMounts" -}}
- name: database-secret
  mountPath: /var/run/secrets/neurobatch/database
  readOnly: true
- name: broker-secret
  mountPath: /var/run/secrets/neurobatch/broker
  readOnly: true
{{- end -}}

{{/* The role's arguments: global logging flags, the role, the mounted configuration. */}}
{{- define "neurobatch.args" -}}
- {{ .role }}
- --config
- /etc/neurobatch/neurobatch.toml
- --log-level
- {{ .root.Values.logLevel | quote }}
{{- if .root.Values.logJson }}
- --log-json
{{- end }}
{{- end -}}

{{- define "neurobatch.migrateSecretName" -}}
{{- default (printf "%s-migrate-database" (include "neurobatch.fullname" .)) .Values.database.existingSecret -}}
{{- end -}}

{{/* One ServiceMonitor: include with (dict "root" $ "component" "worker" "port" "metrics"). */}}
{{- define "neurobatch.serviceMonitor" -}}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "neurobatch.fullname" .root }}-{{ .component }}
  labels:
    {{- include "neurobatch.labels" (dict "root" .root "component" .component) | nindent 4 }}
    {{- with .root.Values.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "neurobatch.selectorLabels" (dict "root" .root "component" .component) | nindent 6 }}
  endpoints:
    - port: {{ .port }}
      path: /metrics
      interval: {{ .root.Values.serviceMonitor.interval }}
      scrapeTimeout: {{ .root.Values.serviceMonitor.scrapeTimeout }}
{{- end -}}
