// Command loki-shipper ships one LogQL query's lines from Grafana Loki to
// Parquet on S3. See internal/app for the wiring and --help for the flags.
package main

import (
	"os"

	"monologue.dev/loki-shipper/internal/app"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	os.Exit(app.Main(version, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}
