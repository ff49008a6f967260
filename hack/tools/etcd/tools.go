//go:build tools

// Package tools pins etcd for `make tools`; the module's root package is etcd's main.
package tools

import _ "go.etcd.io/etcd/server/v3"
