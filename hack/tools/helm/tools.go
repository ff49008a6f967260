//go:build tools

// Package tools pins Helm for `make tools`.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
