//go:build tools

// Package tools pins the actionlint command build.sh compiles, so that `go mod tidy` keeps its
// dependencies.
package tools

import (
	_ "github.com/rhysd/actionlint/cmd/actionlint"
)
