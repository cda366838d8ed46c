{{/* Chart name, truncated for DNS. */}}
{{- define "alpcrun.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified name: every object is named <fullname>-<component>. */}}
{{- define "alpcrun.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object; call with (dict "root" $ "component" "x"). */}}
{{- define "alpcrun.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{ include "alpcrun.selectorLabels" . }}
{{- end -}}

{{- define "alpcrun.selectorLabels" -}}
app.kubernetes.io/name: {{ include "alpcrun.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "alpcrun.image" -}}
{{- $repo := .root.Values.image.repository -}}
{{- $tag := default .root.Chart.AppVersion .root.Values.image.tag -}}
{{- if .gpu -}}{{- $tag = default (printf "%s-cuda" $tag) .root.Values.image.gpuTag -}}{{- end -}}
{{- with .pool -}}{{- if .image.repository -}}{{- $repo = .image.repository -}}{{- end -}}{{- if .image.tag -}}{{- $tag = .image.tag -}}{{- end -}}{{- end -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}

{{- define "alpcrun.apiKeySecret" -}}
{{- default (printf "%s-api-key" (include "alpcrun.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}

{{- define "alpcrun.tlsSecret" -}}
{{- default (printf "%s-tls" (include "alpcrun.fullname" .)) .Values.tls.existingSecret -}}
{{- end -}}

{{- define "alpcrun.queueManagerAddress" -}}
{{- printf "%s-queue-manager:%d" (include "alpcrun.fullname" .) (int .Values.queueManager.port) -}}
{{- end -}}

{{- define "alpcrun.centralCacheAddress" -}}
{{- printf "%s-central-cache:%d" (include "alpcrun.fullname" .) (int .Values.centralCache.port) -}}
{{- end -}}

{{/*
Environment every alpcrun process gets: API key, logging, TLS file paths.
Call with (dict "root" $ "prefix" "ALPCRUNCH_QM_"): settings other than the API key are per process.
Servers add "server" true: with tls.clientAuth they require client certificates.
With TLS every process serves (servers) and dials (clients) TLS, presenting tls.crt.
*/}}
{{- define "alpcrun.commonEnv" -}}
{{- $v := .root.Values -}}
- name: ALPCRUNCH_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "alpcrun.apiKeySecret" .root }}
      key: {{ $v.auth.existingSecretKey }}
- name: {{ .prefix }}LOG_LEVEL
  value: {{ $v.logLevel | quote }}
- name: {{ .prefix }}LOG_JSON
  value: {{ $v.logJson | quote }}
{{- if $v.tls.enabled }}
- name: {{ .prefix }}TLS
  value: "true"
- name: {{ .prefix }}TLS_CERT
  value: /etc/alpcrun/tls/tls.crt
- name: {{ .prefix }}TLS_KEY
  value: /etc/alpcrun/tls/tls.key
{{- if not $v.tls.systemRoots }}
- name: {{ .prefix }}CA_CERT
  value: /etc/alpcrun/tls/ca.crt
{{- end }}
{{- if and $v.tls.clientAuth .server }}
- name: {{ .prefix }}TLS_CLIENT_AUTH
  value: "true"
{{- end }}
{{- end }}
{{- end -}}

{{/* Extra env from a {NAME: value} map with a prefix. Call with (dict "prefix" "ALPCRUNCH_QM_" "env" $map). */}}
{{- define "alpcrun.extraEnv" -}}
{{- range $k, $v := .env }}
- name: {{ printf "%s%s" $.prefix $k }}
  value: {{ $v | toString | quote }}
{{- end }}
{{- end -}}

{{- define "alpcrun.tlsVolume" -}}
{{- if .Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ include "alpcrun.tlsSecret" . }}
{{- end }}
{{- end -}}

{{- define "alpcrun.tlsMount" -}}
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: /etc/alpcrun/tls
  readOnly: true
{{- end }}
{{- end -}}

{{/*
Probes of a gRPC server on .port: Kubernetes gRPC probes (grpc.health.v1) in plaintext; with TLS
the kubelet cannot speak gRPC over TLS, so a TCP probe is used instead.
*/}}
{{- define "alpcrun.probes" -}}
{{- if .root.Values.tls.enabled }}
readinessProbe:
  tcpSocket: {port: {{ .port }}}
  periodSeconds: 5
livenessProbe:
  tcpSocket: {port: {{ .port }}}
  periodSeconds: 10
  failureThreshold: 6
{{- else }}
startupProbe:
  grpc: {port: {{ .port }}}
  periodSeconds: 2
  failureThreshold: 60
readinessProbe:
  grpc: {port: {{ .port }}}
  periodSeconds: 5
livenessProbe:
  grpc: {port: {{ .port }}}
  periodSeconds: 10
  failureThreshold: 6
{{- end }}
{{- end -}}

{{/* A worker pool's values: workerDefaults deep-merged with the pool's overrides. */}}
{{- define "alpcrun.pool" -}}
{{- $pool := mergeOverwrite (deepCopy .root.Values.workerDefaults) (deepCopy (default dict .pool)) -}}
{{- toYaml $pool -}}
{{- end -}}
