{{/* Fixed names the driver, PersistentVolumes and snapshots depend on. */}}
{{- define "tidemark.driverName" -}}csi.tidemark.dev{{- end -}}
{{- define "tidemark.topologyKey" -}}topology.tidemark.dev/node{{- end -}}

{{/*
The prefix of every object name: the release name, with "-tidemark" unless the release name
already says tidemark. ClusterRoles and other cluster-wide objects therefore start with the
release name, so two releases never collide.
*/}}
{{- define "tidemark.fullname" -}}
{{- if contains "tidemark" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-tidemark" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tidemark.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tidemark.selectorLabels" -}}
app.kubernetes.io/name: tidemark
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tidemark.labels" -}}
{{ include "tidemark.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tidemark
helm.sh/chart: {{ include "tidemark.chart" . }}
{{- end -}}

{{/* ServiceAccount names. */}}
{{- define "tidemark.nodeServiceAccount" -}}
{{- default (printf "%s-node" (include "tidemark.fullname" .)) .Values.serviceAccount.node.name -}}
{{- end -}}
{{- define "tidemark.snapshotControllerServiceAccount" -}}
{{- default (printf "%s-snapshot-controller" (include "tidemark.fullname" .)) .Values.serviceAccount.snapshotController.name -}}
{{- end -}}

{{/* An image reference from one entry of .Values.image; tidemark's tag defaults to appVersion. */}}
{{- define "tidemark.image" -}}
{{- $image := index .root.Values.image .name -}}
{{- $tag := $image.tag | default .root.Chart.AppVersion -}}
{{- printf "%s:%s" $image.repository $tag -}}
{{- end -}}

{{/* Paths on the node. */}}
{{- define "tidemark.pluginDir" -}}
{{- printf "%s/plugins/%s" (.Values.node.kubeletDir | trimSuffix "/") (include "tidemark.driverName" .) -}}
{{- end -}}
{{- define "tidemark.registrationDir" -}}
{{- printf "%s/plugins_registry" (.Values.node.kubeletDir | trimSuffix "/") -}}
{{- end -}}

{{/* Environment for containers that call the API server. */}}
{{- define "tidemark.apiServerEnv" -}}
{{- with .Values.node.kubernetesService.host }}
- name: KUBERNETES_SERVICE_HOST
  value: {{ . | quote }}
{{- end }}
{{- with .Values.node.kubernetesService.port }}
- name: KUBERNETES_SERVICE_PORT
  value: {{ . | toString | quote }}
{{- end }}
{{- end -}}

{{- define "tidemark.nodeNameEnv" -}}
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
{{- end -}}
