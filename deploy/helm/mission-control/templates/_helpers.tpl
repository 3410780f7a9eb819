{{/*
Names. Without `instance` they are the kustomize install's, so that the two stay
interchangeable (the operator's defaults, the tests and the docs name them): the operator's
webhook configuration is mission-control-freeze[-INSTANCE] (main.Options), so the RBAC rule
that names it follows `instance` too.
*/}}
{{- define "mc.name" -}}
mission-control{{ if .Values.instance }}-{{ .Values.instance }}{{ end }}
{{- end -}}

{{- define "mc.webhookConfig" -}}
mission-control-freeze{{ if .Values.instance }}-{{ .Values.instance }}{{ end }}
{{- end -}}

{{- define "mc.namespace" -}}
{{ .Release.Namespace }}
{{- end -}}

{{/* Labels on every object; the selector keeps only the kustomize install's two, so that an
install moved between kustomize and Helm keeps its (immutable) Deployment selector. */}}
{{- define "mc.labels" -}}
app.kubernetes.io/name: {{ include "mc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "mc.selector" -}}
app.kubernetes.io/name: {{ include "mc.name" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "mc.serviceAccount" -}}
- kind: ServiceAccount
  name: {{ include "mc.name" . }}
  namespace: {{ include "mc.namespace" . }}
{{- end -}}

{{/* The guarded namespaces, checked: namespaced RBAC without any grants nothing. */}}
{{- define "mc.namespaces" -}}
{{- if and (eq .Values.rbac.mode "namespaced") (not .Values.namespaces) -}}
{{- fail "rbac.mode=namespaced needs namespaces: the namespaces to guard (each gets a Role)" -}}
{{- end -}}
{{- if not (has .Values.rbac.mode (list "cluster" "namespaced")) -}}
{{- fail (printf "rbac.mode must be cluster or namespaced, not %q" .Values.rbac.mode) -}}
{{- end -}}
{{- toJson .Values.namespaces -}}
{{- end -}}

{{/* Rules inside one guarded namespace: deploy/namespaced/guarded/role.yaml. The cluster
install grants the same cluster-wide (rbac-cluster.yaml); each rule's reason is there and in
deploy/rbac.yaml. */}}
{{- define "mc.guardedRules" -}}
- apiGroups: ["missioncontrol.dev"]
  resources: ["runbooks", "serviceownerships", "incidentpolicies"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["missioncontrol.dev"]
  resources: ["incidents"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["missioncontrol.dev"]
  resources: ["runbooks/status", "serviceownerships/status", "incidentpolicies/status"]
  verbs: ["patch"]
# `operate`: our own verb, checked by the incident admission policy.
- apiGroups: ["missioncontrol.dev"]
  resources: ["incidents/status"]
  verbs: ["patch", "operate"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments/scale"]
  verbs: ["patch"]
# pauseConsumers pauses a KEDA-scaled consumer by its ScaledObject's annotation.
- apiGroups: ["keda.sh"]
  resources: ["scaledobjects"]
  verbs: ["get", "list", "patch"]
# suspendGitOps suspends the Flux object or Argo CD Application that applies the target, and
# reads the Flux source whose revision the freeze then waits on.
- apiGroups: ["kustomize.toolkit.fluxcd.io", "helm.toolkit.fluxcd.io"]
  resources: ["kustomizations", "helmreleases"]
  verbs: ["get", "patch"]
- apiGroups: ["source.toolkit.fluxcd.io"]
  resources: ["gitrepositories", "ocirepositories", "buckets", "helmcharts"]
  verbs: ["get"]
- apiGroups: ["argoproj.io"]
  resources: ["applications"]
  verbs: ["get", "patch"]
# rateLimit sets ingress-nginx's limit-rps annotation on an Ingress the runbook names.
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["get", "patch"]
- apiGroups: ["apps"]
  resources: ["replicasets"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["list", "watch", "create"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "patch"]
{{- end -}}
