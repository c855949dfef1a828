// Package config gathers every package's flags into one command line, with
// an environment variable for each flag: LOKI_SHIPPER_ and the flag name in
// capitals with "." and "-" as "_" (--loki.url is LOKI_SHIPPER_LOKI_URL).
// A flag on the command line wins over its variable.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"monologue.dev/loki-shipper/internal/loki"
	"monologue.dev/loki-shipper/internal/parquet"
	"monologue.dev/loki-shipper/internal/retry"
	"monologue.dev/loki-shipper/internal/shipper"
	"monologue.dev/loki-shipper/internal/sink"
	"monologue.dev/loki-shipper/internal/telemetry"
)

const EnvPrefix = "LOKI_SHIPPER_"

// Config is the whole command line.
type Config struct {
	Loki     loki.Config
	S3       sink.S3Config
	Shipper  shipper.Config
	Parquet  parquet.Config
	Retry    retry.Config
	HTTP     telemetry.Config
	LogLevel slog.Level
	Version  bool
}

// EnvName is the environment variable of a flag.
func EnvName(flagName string) string {
	return EnvPrefix + strings.NewReplacer(".", "_", "-", "_").Replace(strings.ToUpper(flagName))
}

// Parse reads args and the environment (getenv) into a validated Config.
// flag.ErrHelp is returned after --help printed the usage to out.
func Parse(args []string, getenv func(string) string, out io.Writer) (*Config, error) {
	var c Config
	fs := flag.NewFlagSet("loki-shipper", flag.ContinueOnError)
	fs.SetOutput(out)
	c.Loki.RegisterFlags(fs)
	c.S3.RegisterFlags(fs)
	c.Shipper.RegisterFlags(fs)
	c.Parquet.RegisterFlags(fs)
	c.Retry.RegisterFlags(fs)
	c.HTTP.RegisterFlags(fs)
	fs.TextVar(&c.LogLevel, "log.level", slog.LevelInfo, "Log level: debug, info, warn or error.")
	fs.BoolVar(&c.Version, "version", false, "Print the version and exit.")
	fs.Usage = func() { usage(fs, out) }

	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q: every setting is a --flag (see --help)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		if v := getenv(EnvName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if c.Version {
		return &c, nil
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) Validate() error {
	return errors.Join(c.Loki.Validate(), c.S3.Validate(), c.Shipper.Validate(), c.Parquet.Validate(), c.Retry.Validate(), c.HTTP.Validate())
}

func usage(fs *flag.FlagSet, out io.Writer) {
	fmt.Fprint(out, `loki-shipper ships the lines of one LogQL query from Grafana Loki to Parquet objects on S3:
<prefix>/dt=YYYY-MM-DD/<start>_<end>.parquet, exactly once, with a checkpoint at
<prefix>/_checkpoint.json. It catches up from the checkpoint (or --start) one object per window,
then follows Loki: every --flush-interval, the lines older than --lag become one more object.

Usage:
  loki-shipper --loki.url=http://loki:3100 --loki.query='{namespace="prod"}' \
               --s3.bucket=logs --s3.prefix=spaces/prod/api [flags]
  loki-shipper ... --once --start=2024-01-02T00:00:00Z --end=2024-01-03T00:00:00Z

S3 credentials come from the standard AWS chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
AWS_PROFILE, web identity, instance role). Every flag can also be set by an environment
variable, e.g. --loki.url as LOKI_SHIPPER_LOKI_URL.

Flags:
`)
	fs.VisitAll(func(f *flag.Flag) {
		name, help := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		fmt.Fprintf(out, "%s\n    \t%s", line, help)
		if f.DefValue != "" && f.DefValue != "false" {
			fmt.Fprintf(out, " (default %s)", f.DefValue)
		}
		fmt.Fprintf(out, " [$%s]\n", EnvName(f.Name))
	})
}
