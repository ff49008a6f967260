#!/usr/bin/env bash
# Builds the pinned Go tools into bin/ (kube-apiserver, etcd, zed, helm).
#
# Each tool has its own module under hack/tools/<name>/ because their k8s.io
# dependency versions conflict. A tool is rebuilt only when its go.mod/go.sum
# changed since the last build (a stamp file beside the binary records their
# hash), so a second `make tools` takes seconds; Go's own build cache makes a
# rebuild after a version bump incremental.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/bin"
mkdir -p "$bin"

# name:package
tools=(
  "etcd:go.etcd.io/etcd/server/v3"
  "zed:github.com/brimdata/zed/cmd/zed"
  "helm:helm.sh/helm/v3/cmd/helm"
  "kube-apiserver:k8s.io/kubernetes/cmd/kube-apiserver"
)
if [ "$#" -gt 0 ]; then
  wanted=" $* "
  selected=()
  for t in "${tools[@]}"; do
    case "$wanted" in *" ${t%%:*} "*) selected+=("$t") ;; esac
  done
  tools=("${selected[@]}")
fi

command -v go >/dev/null || { echo "make tools: 'go' is not on PATH; install Go 1.26 or newer (the pinned etcd and Helm modules need it)" >&2; exit 1; }

# kube-apiserver's version string comes from ldflags, as in Kubernetes' own build.
ldflags_for() {
  local name=$1 dir=$2 version
  case "$name" in
    kube-apiserver)
      version=$(cd "$dir" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
      echo "-s -w -X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$version" | cut -d. -f2) -X k8s.io/client-go/pkg/version.gitVersion=$version"
      ;;
    helm)
      version=$(cd "$dir" && go list -m -f '{{.Version}}' helm.sh/helm/v3)
      echo "-s -w -X helm.sh/helm/v3/internal/version.version=$version"
      ;;
    zed)
      version=$(cd "$dir" && go list -m -f '{{.Version}}' github.com/brimdata/zed)
      echo "-s -w -X github.com/brimdata/zed/cli.version=$version"
      ;;
    *) echo "-s -w" ;;
  esac
}

n=${#tools[@]}
i=0
for t in "${tools[@]}"; do
  i=$((i + 1))
  name=${t%%:*}
  pkg=${t#*:}
  dir="$root/hack/tools/$name"
  stamp="$bin/.$name.stamp"
  want=$(cat "$dir/go.mod" "$dir/go.sum" | sha256sum | cut -d' ' -f1)
  if [ -x "$bin/$name" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "[$i/$n] $name: up to date"
    continue
  fi
  echo "[$i/$n] $name: downloading modules..."
  (cd "$dir" && go mod download)
  note=""
  [ "$name" = kube-apiserver ] && note=" (a first build takes several minutes)"
  echo "[$i/$n] $name: building $pkg$note..."
  start=$(date +%s)
  (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "$(ldflags_for "$name" "$dir")" -o "$bin/$name.tmp" "$pkg")
  mv "$bin/$name.tmp" "$bin/$name"
  echo "$want" > "$stamp"
  echo "[$i/$n] $name: built in $(( $(date +%s) - start ))s"
done
