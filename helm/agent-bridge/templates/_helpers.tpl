{{- define "agent-bridge.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "agent-bridge.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "agent-bridge.labels" -}}
app.kubernetes.io/name: {{ include "agent-bridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "agent-bridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agent-bridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- /*
A value as TOML: strings (JSON escapes are TOML escapes), booleans, integers (YAML numbers arrive
as float64: whole ones print without an exponent), floats, lists and maps (inline tables). A null
fails the render, naming nothing TOML could say instead.
*/ -}}
{{- define "agent-bridge.tomlValue" -}}
{{- $v := . -}}
{{- if kindIs "string" $v -}}{{ $v | toJson }}
{{- else if kindIs "bool" $v -}}{{ $v }}
{{- else if or (kindIs "int" $v) (kindIs "int64" $v) -}}{{ $v }}
{{- else if kindIs "float64" $v -}}
{{- if eq (float64 (int64 $v)) $v }}{{ int64 $v }}{{ else }}{{ $v }}{{ end -}}
{{- else if kindIs "slice" $v -}}
[{{ range $i, $e := $v }}{{ if $i }}, {{ end }}{{ include "agent-bridge.tomlValue" $e }}{{ end }}]
{{- else if kindIs "map" $v -}}
{ {{- range $i, $k := keys $v | sortAlpha }}{{ if $i }},{{ end }} {{ include "agent-bridge.tomlKey" $k }} = {{ include "agent-bridge.tomlValue" (get $v $k) }}{{ end }} }
{{- else -}}
{{- fail (printf "config: a %s value cannot be written as TOML" (kindOf $v)) -}}
{{- end -}}
{{- end -}}

{{- /* A TOML key: bare when it can be, else quoted. */ -}}
{{- define "agent-bridge.tomlKey" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . }}{{ . }}{{ else }}{{ . | toJson }}{{ end -}}
{{- end -}}

{{- /* A flat map as a TOML document: one `key = value` line per key, sorted. */ -}}
{{- define "agent-bridge.toml" -}}
{{- range $k := keys . | sortAlpha }}
{{ include "agent-bridge.tomlKey" $k }} = {{ include "agent-bridge.tomlValue" (get $ $k) }}
{{- end }}
{{- end -}}

{{- /* The Secret holding the bootstrap admin key / JWT secret the chart generates. */ -}}
{{- define "agent-bridge.secretName" -}}
{{- printf "%s-auth" (include "agent-bridge.fullname" .) -}}
{{- end -}}

{{- define "agent-bridge.bootstrapSecret" -}}
{{- .Values.auth.bootstrapAdminKey.existingSecret | default (include "agent-bridge.secretName" .) -}}
{{- end -}}

{{- define "agent-bridge.jwtSecret" -}}
{{- .Values.auth.jwt.existingSecret | default (include "agent-bridge.secretName" .) -}}
{{- end -}}

{{- define "agent-bridge.headlessName" -}}
{{- printf "%s-headless" (include "agent-bridge.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
