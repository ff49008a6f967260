//go:build tools

// Package tools pins the Zed lake CLI (v1.18.0, the last release under this name).
package tools

import _ "github.com/brimdata/zed/cmd/zed"
