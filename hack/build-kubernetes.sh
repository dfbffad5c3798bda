#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager and kube-scheduler from the Go module k8s.io/kubernetes.
# `go install k8s.io/kubernetes/cmd/...@v` refuses the module because its go.mod has replace directives for
# the staging repositories, so we build through a wrapper module that requires k8s.io/kubernetes and replaces
# every staging module with its published v0.Y.Z twin.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ -x "$K8S_BIN/kube-apiserver" && -x "$K8S_BIN/kube-controller-manager" && -x "$K8S_BIN/kube-scheduler" ]]; then
  log "kubernetes $K8S_VERSION: cached in $K8S_BIN"
  exit 0
fi

staging_version="v0.${K8S_VERSION#v1.}"
work="$(mktemp -d "${TMPDIR:-/tmp}/mr-k8s-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
log "kubernetes $K8S_VERSION: building (a cold build takes about 8 minutes on 2 cores)"

gomod_file="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
go_directive="$(awk '$1=="go"{print $2; exit}' "$gomod_file")"
{
  echo "module modelrollout.dev/hack/k8sbuild"
  echo
  echo "go $go_directive"
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  # Every `k8s.io/x => ./staging/src/k8s.io/x` line of the tag's go.mod becomes a replace with the same version.
  awk '$2=="=>" && $3 ~ /^\.\/staging\// {printf "replace %s => %s %s\n", $1, $1, v}' v="$staging_version" "$gomod_file"
} > "$work/go.mod"
count="$(grep -c '^replace' "$work/go.mod")"
[[ "$count" -ge 25 ]] || { log "expected ~31 staging replaces, found $count"; exit 1; }

cd "$work"
pkgs=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler)
go get "${pkgs[@]/%/@$K8S_VERSION}"

minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
mkdir -p "$work/out"
go build -trimpath -ldflags "$ldflags" -o "$work/out/" "${pkgs[@]}"
"$work/out/kube-apiserver" --version
publish_dir "$work/out" "$K8S_BIN"
log "kubernetes $K8S_VERSION: built into $K8S_BIN"
