{{/*
The chart's name, at most 63 characters (a label value).
*/}}
{{- define "torchship.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name, at most 63 characters (a DNS label). A release named after the chart
is not repeated ("torchship", not "torchship-torchship").
*/}}
{{- define "torchship.fullname" -}}
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
The chart label value: name-version.
*/}}
{{- define "torchship.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object of the release.
*/}}
{{- define "torchship.labels" -}}
helm.sh/chart: {{ include "torchship.chart" . }}
app.kubernetes.io/name: {{ include "torchship.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: torchship
{{- end }}

{{/*
Labels of the operator's objects (its pods, Deployment, Service, RBAC).
*/}}
{{- define "torchship.operatorLabels" -}}
{{ include "torchship.labels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
The operator pods' selector: immutable in a Deployment, so nothing that changes by version.
*/}}
{{- define "torchship.selectorLabels" -}}
app.kubernetes.io/name: {{ include "torchship.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
The ServiceAccount the operator runs as.
*/}}
{{- define "torchship.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "torchship.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator image: repository@digest, or repository:tag (default: the appVersion).
*/}}
{{- define "torchship.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
"true" when leader election is on: asked for, or needed by more than one replica.
*/}}
{{- define "torchship.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) }}true{{ else }}false{{ end }}
{{- end }}

{{/*
RBAC rules for what the operator does inside the namespaces it serves: read ModelServices and
write only their status; server-side apply (patch, and create for a new object), prune and
scale their children; the model cache's claim and fill Job; read pods for the reasons in status
(and mark the one an old revision gives up to make room); post events; with gatewayAPI.enabled,
write the HTTPRoutes of trafficRouting gateway-api. Used by the Roles of a namespaced install
and by the ClusterRole of a cluster-wide one. Kept in step with torchship_operator.rbac (a test
compares them). Leader election's Lease is not here: a Role in the release namespace grants it
(leader-election-role.yaml).
*/}}
{{- define "torchship.namespacedRules" -}}
- apiGroups: ["torchship.dev"]
  resources: ["modelservices"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["torchship.dev"]
  resources: ["modelservices/status"]
  verbs: ["patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments/scale"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "list", "create", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if .Values.gatewayAPI.enabled }}
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "create", "patch", "delete"]
{{- end }}
{{- end }}

{{/*
The name of the leader-election Role and RoleBinding: the full name and "-leader-election", at
most 63 characters: not the name of the Role a namespaced install puts in each watched namespace,
which may be the release namespace too.
*/}}
{{- define "torchship.leaderElectionName" -}}
{{- printf "%s-leader-election" (include "torchship.fullname" . | trunc 47 | trimSuffix "-") }}
{{- end }}

{{/*
The cluster-scoped reads kopf uses: CRDs (to find the ModelService resource, and to notice the
Gateway API) and namespaces (to follow them as they come and go).
*/}}
{{- define "torchship.discoveryRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["get", "list"]
{{- end }}

{{/*
One CRD from a file under files/crds/ (a copy of crds/, see hack/sync-chart-crds.sh), picked by
name from a multi-document file, with the release's labels and, when crds.keep, the
helm.sh/resource-policy annotation that makes `helm uninstall` leave it.
Arguments: dict "ctx" $ "file" "files/crds/x.yaml" "name" "plural.group".
*/}}
{{- define "torchship.crd" -}}
{{- $ctx := .ctx }}
{{- $text := $ctx.Files.Get .file }}
{{- if not $text }}
{{- fail (printf "%s is missing from the chart: run hack/sync-chart-crds.sh" .file) }}
{{- end }}
{{- $found := dict }}
{{- range $doc := regexSplit "(?m)^---[ \t]*$" $text -1 }}
{{- $crd := fromYaml $doc }}
{{- if hasKey $crd "Error" }}
{{- fail (printf "%s: %s" $.file $crd.Error) }}
{{- end }}
{{- if eq (dig "metadata" "name" "" $crd) $.name }}
{{- $labels := merge (include "torchship.labels" $ctx | fromYaml) (dig "metadata" "labels" dict $crd) }}
{{- $_ := set $crd.metadata "labels" $labels }}
{{- if $ctx.Values.crds.keep }}
{{- $annotations := merge (dict "helm.sh/resource-policy" "keep") (dig "metadata" "annotations" dict $crd) }}
{{- $_ := set $crd.metadata "annotations" $annotations }}
{{- end }}
{{- $_ := set $found "crd" $crd }}
{{- end }}
{{- end }}
{{- if not $found.crd }}
{{- fail (printf "%s holds no CRD named %s: run hack/sync-chart-crds.sh" .file .name) }}
{{- end }}
{{- toYaml $found.crd }}
{{- end }}
