#!/usr/bin/env bash
# Checks a Helm chart, offline, with the tools hack/build-chart-tools.sh builds (it is run first; silent when cached):
#
#   helm lint --strict        the defaults, then each values file in CHART/ci/*.yaml
#   helm template | kubeconform -strict
#                             each of those renders, against the Kubernetes $K8S_VERSION-minor schemas and the CRD
#                             schemas converted now (hack/crd_schemas.py) from crds/ and the Prometheus Operator's;
#                             a kind with no schema fails, and no schema is ever fetched
#   kube-score score          the same renders, less the tests CHART/kube-score-ignore.txt lists (one
#                             `test-id  # reason` a line; blank lines and comments skipped)
#   helm unittest             CHART/tests/, skipped with a message while the chart has none
#   actionlint                .github/workflows/*.y*ml, when there are any
#
#   hack/check-chart.sh [CHART_DIR]      (default charts/modelrollout)
#
# Every check runs even after one fails; the exit status is non-zero when any failed, and each tool's own output says
# why. Helm's config, cache and data are a temporary directory, so no repository or plugin of the user's is seen.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

chart="$(cd "${1:-$REPO_ROOT/charts/modelrollout}" && pwd)"
[[ -f "$chart/Chart.yaml" ]] || { log "$chart has no Chart.yaml"; exit 2; }
tools_env="$("$HACK_DIR/build-chart-tools.sh" env)" # fails here when a build does
eval "$tools_env"
python="${PYTHON:-$REPO_ROOT/.venv/bin/python}"
[[ -x "$python" ]] || python=python3 # hack/crd_schemas.py needs PyYAML (make venv installs it)

work="$(mktemp -d "${TMPDIR:-/tmp}/mr-check-chart.XXXXXX")"
trap 'rm -rf "$work"' EXIT
export HELM_PLUGINS HELM_CONFIG_HOME="$work/helm/config" HELM_CACHE_HOME="$work/helm/cache" \
  HELM_DATA_HOME="$work/helm/data"
kube_version="${K8S_VERSION#v}"
# ServiceMonitor and PodMonitor are usually rendered only where the cluster serves them; pretend it does, so that
# what the chart renders for such clusters is checked too.
api_versions=(--api-versions monitoring.coreos.com/v1 --api-versions monitoring.coreos.com/v1/ServiceMonitor
  --api-versions monitoring.coreos.com/v1/PodMonitor)

failed=()
section() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { # run NAME COMMAND...: a check whose failure is recorded (and returned), not fatal
  local name="$1"
  shift
  section "$name"
  "$@" && return
  failed+=("$name")
  printf '\033[1;31mFAILED: %s\033[0m\n' "$name"
  return 1
}

# The values sets: the chart's defaults, then each file under ci/ (as chart-testing does).
values=("")
for f in "$chart"/ci/*.yaml; do
  [[ -f "$f" ]] && values+=("$f")
done
label() { if [[ -n "$1" ]]; then echo "ci/${1##*/}"; else echo defaults; fi; }
lint() { # lint VALUES
  local args=()
  [[ -z "$1" ]] || args=(--values "$1")
  "$HELM" lint --strict --kube-version "$kube_version" "${args[@]}" "$chart"
}
for v in "${values[@]}"; do
  run "helm lint --strict ($(label "$v"))" lint "$v" || :
done

# CRD schemas: ours and the Prometheus Operator's, converted now (ours changes with the code), ObjectMeta included.
crd_schemas="$work/crd-schemas"
"$python" "$HACK_DIR/crd_schemas.py" \
  --object-meta-from "$KUBE_SCHEMAS/v$KUBE_SCHEMAS_VERSION-standalone-strict/configmap-v1.json" \
  "$crd_schemas" "$PROMETHEUS_OPERATOR_CRDS"/*.yaml "$REPO_ROOT"/crds/*.yaml

ignored=()
if [[ -f "$chart/kube-score-ignore.txt" ]]; then
  while read -r test _; do
    [[ -z "$test" || "$test" == \#* ]] || ignored+=(--ignore-test "$test")
  done <"$chart/kube-score-ignore.txt"
fi

render() { # render VALUES OUT: helm template, CRDs included
  local args=()
  [[ -z "$1" ]] || args=(--values "$1")
  "$HELM" template modelrollout "$chart" --namespace modelrollout --include-crds --kube-version "$kube_version" \
    "${api_versions[@]}" "${args[@]}" >"$2"
}
kubeconform_() {
  "$KUBECONFORM" -strict -summary -output text -kubernetes-version "$KUBE_SCHEMAS_VERSION" \
    -schema-location "$KUBE_SCHEMAS" \
    -schema-location "$crd_schemas/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json" "$1"
}
kube_score() {
  "$KUBE_SCORE" score --color never --kubernetes-version "v${KUBE_SCHEMAS_VERSION%.*}" "${ignored[@]}" "$1"
}
n=0
for v in "${values[@]}"; do
  out="$work/render-$((n++)).yaml"
  if run "helm template ($(label "$v"))" render "$v" "$out"; then
    run "kubeconform -strict ($(label "$v"))" kubeconform_ "$out" || :
    run "kube-score ($(label "$v"))" kube_score "$out" || :
  fi
done

if [[ -d "$chart/tests" ]]; then
  run "helm unittest" "$HELM" unittest --strict "$chart" || :
else
  section "helm unittest"
  echo "skipped: $chart has no tests/ directory yet"
fi

workflows=()
for f in "$REPO_ROOT"/.github/workflows/*.y*ml; do
  [[ -f "$f" ]] && workflows+=("$f")
done
if [[ ${#workflows[@]} -gt 0 ]]; then
  # actionlint runs shellcheck and pyflakes when on PATH; they are not among our tools, so they are turned off and
  # every machine checks the same.
  run "actionlint" "$ACTIONLINT" -shellcheck= -pyflakes= "${workflows[@]}" || :
else
  section "actionlint"
  echo "skipped: no .github/workflows/*.yml"
fi

echo
if [[ ${#failed[@]} -gt 0 ]]; then
  printf '\033[1;31mchart checks failed:\033[0m\n'
  printf '  %s\n' "${failed[@]}"
  exit 1
fi
printf '\033[1;32mchart checks passed\033[0m (%s)\n' "$chart"
