{{/*
The metric a worker pool scales on: a gauge the queue manager exports on /metrics.
  workersWanted: alpcrun_workers_wanted (or alpcrun_session_workers_wanted{app_id}), one replica each
  queueDepth:    alpcrun_queue_depth (or alpcrun_session_queue_depth{app_id}), N queued tasks per replica
*/}}
{{- define "alpcrun.scaleMetric" -}}
{{- $as := .autoscaling -}}
{{- $base := ternary "workers_wanted" "queue_depth" (eq $as.metric "workersWanted") -}}
name: {{ ternary (printf "alpcrun_session_%s" $base) (printf "alpcrun_%s" $base) (ne $as.appId "") }}
target: {{ ternary 1 $as.targetQueueDepthPerReplica (eq $as.metric "workersWanted") }}
{{- if $as.appId }}
appId: {{ $as.appId | quote }}
{{- end }}
{{- end -}}

{{/* HPA, KEDA ScaledObject or `alpcrun scaler` Deployment for one worker pool. */}}
{{- define "alpcrun.autoscaler" -}}
{{- $root := .root }}
{{- $as := .pool.autoscaling }}
{{- $m := include "alpcrun.scaleMetric" (dict "autoscaling" $as) | fromYaml }}
{{- /* Series of this release only: Prometheus labels each with the Service it scraped. */}}
{{- $service := printf "%s-queue-manager" (include "alpcrun.fullname" $root) }}
{{- if eq $as.mode "hpa" }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ .name }}
  labels:
    {{- include "alpcrun.labels" (dict "root" $root "component" .component) | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ .name }}
  minReplicas: {{ $as.minReplicas }}
  maxReplicas: {{ $as.maxReplicas }}
  metrics:
    - type: External
      external:
        metric:
          name: {{ $m.name }}
          selector:
            matchLabels:
              service: {{ $service | quote }}
              {{- if $m.appId }}
              app_id: {{ $m.appId | quote }}
              {{- end }}
        target:
          type: AverageValue
          averageValue: {{ $m.target | quote }}
  {{- with $as.behavior }}
  behavior: {{- toYaml . | nindent 4 }}
  {{- end }}
{{- else if eq $as.mode "keda" }}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {{ .name }}
  labels:
    {{- include "alpcrun.labels" (dict "root" $root "component" .component) | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ .name }}
  minReplicaCount: {{ $as.minReplicas }}
  maxReplicaCount: {{ $as.maxReplicas }}
  pollingInterval: {{ $as.keda.pollingInterval }}
  cooldownPeriod: {{ $as.keda.cooldownPeriod }}
  {{- with $as.behavior }}
  advanced:
    horizontalPodAutoscalerConfig:
      behavior: {{- toYaml . | nindent 8 }}
  {{- end }}
  triggers:
    - type: prometheus
      metricType: AverageValue
      metadata:
        serverAddress: {{ $as.keda.prometheusAddress | quote }}
        {{- if $m.appId }}
        query: {{ printf "sum(%s{namespace=%q,service=%q,app_id=%q})" $m.name $root.Release.Namespace $service $m.appId | quote }}
        {{- else }}
        query: {{ printf "sum(%s{namespace=%q,service=%q})" $m.name $root.Release.Namespace $service | quote }}
        {{- end }}
        threshold: {{ $m.target | quote }}
        ignoreNullValues: "true"
{{- else if eq $as.mode "scaler" }}
{{- $fullname := include "alpcrun.fullname" $root }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ printf "%s-scaler" .name }}
  labels:
    {{- include "alpcrun.labels" (dict "root" $root "component" (printf "%s-scaler" .component)) | nindent 4 }}
spec:
  replicas: 1
  strategy:
    type: Recreate
  selector:
    matchLabels:
      {{- include "alpcrun.selectorLabels" (dict "root" $root "component" (printf "%s-scaler" .component)) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "alpcrun.labels" (dict "root" $root "component" (printf "%s-scaler" .component)) | nindent 8 }}
    spec:
      serviceAccountName: {{ $fullname }}-scaler
      securityContext: {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets: {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: scaler
          image: {{ include "alpcrun.image" (dict "root" $root) | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args:
            - scaler
            - --deployment={{ .name }}
            - --metrics-url={{ printf "http://%s-queue-manager:%d/metrics" $fullname (int $root.Values.queueManager.metricsPort) }}
            - --metric={{ $m.name }}
            {{- if $m.appId }}
            - --app-id={{ $m.appId }}
            {{- end }}
            - --per-replica={{ $m.target }}
            - --min-replicas={{ $as.minReplicas }}
            - --max-replicas={{ $as.maxReplicas }}
            - --interval={{ $as.scaler.interval }}
            - --scale-down-window={{ $as.scaler.scaleDownWindow }}
            - --max-step-up={{ $as.scaler.maxStepUp }}
            - --max-step-down={{ $as.scaler.maxStepDown }}
            - --metrics-port={{ $root.Values.scaler.metricsPort }}
          ports:
            - name: metrics
              containerPort: {{ $root.Values.scaler.metricsPort }}
              protocol: TCP
          livenessProbe:
            httpGet: {path: /healthz, port: metrics}
            periodSeconds: 20
            failureThreshold: 3
          readinessProbe:
            httpGet: {path: /readyz, port: metrics}
            periodSeconds: 15
          env:
            - name: ALPCRUNCH_SCALER_NAMESPACE
              valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
            - name: ALPCRUNCH_SCALER_LOG_LEVEL
              value: {{ $root.Values.logLevel | quote }}
          resources: {{- toYaml $root.Values.scaler.resources | nindent 12 }}
          securityContext: {{- toYaml $root.Values.securityContext | nindent 12 }}
{{- end }}
{{- end -}}
