{{/*
Shared names, labels and paths. The paths inside the containers are the contract with the programs
(tests/chart checks every rendered flag and variable against the programs' own settings).
*/}}

{{- define "spiderpool.namespace" -}}
{{- .Release.Namespace -}}
{{- end -}}

{{- define "spiderpool.labels" -}}
app.kubernetes.io/name: spiderpool
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.global.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "spiderpool.annotations" -}}
{{- with .Values.global.commonAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Selector labels of a component: (dict "root" $ "component" "spiderpool-agent") */}}
{{- define "spiderpool.selector" -}}
app.kubernetes.io/name: spiderpool
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* An image reference: (dict "root" $ "image" .Values.spiderpoolAgent.image) */}}
{{- define "spiderpool.image" -}}
{{- $registry := .root.Values.global.imageRegistryOverride | default .image.registry -}}
{{- $name := ternary .image.repository (printf "%s/%s" $registry .image.repository) (empty $registry) -}}
{{- if .image.digest -}}
{{ $name }}@{{ .image.digest }}
{{- else -}}
{{ $name }}:{{ .image.tag | default .root.Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- define "spiderpool.controller.service" -}}
{{- .Values.spiderpoolController.name -}}
{{- end -}}

{{/* The name the controller's certificates carry, and the agents' TLS server name. */}}
{{- define "spiderpool.controller.serverName" -}}
{{ include "spiderpool.controller.service" . }}.{{ include "spiderpool.namespace" . }}.svc
{{- end -}}

{{/* Where the agents dial the controller Service (mutual TLS). */}}
{{- define "spiderpool.controller.address" -}}
{{ include "spiderpool.controller.serverName" . }}.{{ .Values.global.clusterDnsDomain }}:{{ .Values.spiderpoolController.grpcPort }}
{{- end -}}

{{- define "spiderpool.controller.dnsNames" -}}
{{- $svc := include "spiderpool.controller.service" . -}}
{{- $ns := include "spiderpool.namespace" . -}}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .Values.global.clusterDnsDomain) | toJson -}}
{{- end -}}

{{/* The Secrets holding the gRPC port's mutual TLS material (tls.crt, tls.key, ca.crt). */}}
{{- define "spiderpool.grpcTls.controllerSecret" -}}
{{- if eq .Values.spiderpoolController.tls.method "provided" -}}
{{ required "spiderpoolController.tls.provided.grpcControllerSecret is required with tls.method provided" .Values.spiderpoolController.tls.provided.grpcControllerSecret }}
{{- else -}}
{{ .Values.spiderpoolController.name }}-grpc-tls
{{- end -}}
{{- end -}}

{{- define "spiderpool.grpcTls.agentSecret" -}}
{{- if eq .Values.spiderpoolController.tls.method "provided" -}}
{{ required "spiderpoolController.tls.provided.grpcAgentSecret is required with tls.method provided" .Values.spiderpoolController.tls.provided.grpcAgentSecret }}
{{- else -}}
{{ .Values.spiderpoolAgent.name }}-grpc-tls
{{- end -}}
{{- end -}}

{{/* Mount points inside the containers. */}}
{{- define "spiderpool.paths.config" -}}/etc/spiderpool/config{{- end -}}
{{- define "spiderpool.paths.grpcTls" -}}/etc/spiderpool/grpc-tls{{- end -}}
{{- define "spiderpool.paths.webhookTls" -}}/etc/spiderpool/webhook-tls{{- end -}}
{{- define "spiderpool.paths.initManifests" -}}/etc/spiderpool/init{{- end -}}
{{- define "spiderpool.paths.hostRoot" -}}/host{{- end -}}
{{/* Where the image carries the interpreter bundle (deploy/Dockerfile copies make dist's pybundle there). */}}
{{- define "spiderpool.paths.bundle" -}}/usr/share/spiderpool/pybundle{{- end -}}

{{/* The four mutual TLS arguments of a gRPC client or server: (dict "prefix" "--tls-" "root" $) */}}
{{- define "spiderpool.grpcTlsArgs" -}}
- --{{ .prefix }}cert-file={{ include "spiderpool.paths.grpcTls" .root }}/tls.crt
- --{{ .prefix }}key-file={{ include "spiderpool.paths.grpcTls" .root }}/tls.key
- --{{ .prefix }}ca-file={{ include "spiderpool.paths.grpcTls" .root }}/ca.crt
- --{{ .prefix }}server-name={{ include "spiderpool.controller.serverName" .root }}
{{- end -}}

{{/* Upstream knobs this implementation does not do: refuse rather than ignore them. */}}
{{- define "spiderpool.validate" -}}
{{- if not .Values.ipam.enableStatefulSet -}}
{{- fail "ipam.enableStatefulSet=false is not supported: StatefulSet pods always keep their addresses in this implementation" -}}
{{- end -}}
{{- if .Values.multus.multusCNI.install -}}
{{- fail "multus.multusCNI.install=true is not supported: this chart does not bundle Multus; install it on its own" -}}
{{- end -}}
{{- if not (or .Values.ipam.enableIPv4 .Values.ipam.enableIPv6) -}}
{{- fail "ipam.enableIPv4 and ipam.enableIPv6 are both false: enable at least one family" -}}
{{- end -}}
{{- $p := .Values.clusterDefaultPool -}}
{{- if $p.installIPv4IPPool -}}
{{- if not (and $p.ipv4Subnet $p.ipv4IPRanges) -}}
{{- fail "clusterDefaultPool.installIPv4IPPool needs clusterDefaultPool.ipv4Subnet and ipv4IPRanges" -}}
{{- end -}}
{{- end -}}
{{- if $p.installIPv6IPPool -}}
{{- if not (and $p.ipv6Subnet $p.ipv6IPRanges) -}}
{{- fail "clusterDefaultPool.installIPv6IPPool needs clusterDefaultPool.ipv6Subnet and ipv6IPRanges" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The resources the post-install job creates (JSON list of plurals; empty: no job). */}}
{{- define "spiderpool.init.kinds" -}}
{{- $kinds := list -}}
{{- if .Values.coordinator.enabled -}}{{- $kinds = append $kinds "spidercoordinators" -}}{{- end -}}
{{- $p := .Values.clusterDefaultPool -}}
{{- if or $p.installIPv4IPPool $p.installIPv6IPPool -}}
{{- $kinds = append $kinds "spiderippools" -}}
{{- if .Values.ipam.spiderSubnet.enable -}}{{- $kinds = append $kinds "spidersubnets" -}}{{- end -}}
{{- end -}}
{{- toJson $kinds -}}
{{- end -}}

{{/* Every spiderpool resource (plurals), as the CRDs in crds/ define them. */}}
{{- define "spiderpool.resources" -}}
["spiderippools","spidersubnets","spiderreservedips","spiderendpoints","spidermultusconfigs","spidercoordinators"]
{{- end -}}
