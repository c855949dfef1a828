package config

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	required := []string{"--loki.url=http://loki:3100", `--loki.query={app="api"}`, "--s3.bucket=logs"}
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(*Config) string
		wantErr string
	}{
		{
			name: "the required flags alone give sane defaults",
			args: required,
			check: func(c *Config) string {
				if c.Shipper.Window != time.Minute || c.Shipper.Lag != 3*time.Second || c.Shipper.FlushInterval != 2*time.Second || c.Loki.Limit != 5000 || c.Shipper.Once {
					return "unexpected defaults"
				}
				return ""
			},
		},
		{
			name: "environment variables set flags",
			env:  map[string]string{"LOKI_SHIPPER_LOKI_URL": "http://env:3100", "LOKI_SHIPPER_LOKI_QUERY": `{a="b"}`, "LOKI_SHIPPER_S3_BUCKET": "b", "LOKI_SHIPPER_S3_PATH_STYLE": "true", "LOKI_SHIPPER_WINDOW": "5m"},
			check: func(c *Config) string {
				if c.Loki.URL != "http://env:3100" || !c.S3.PathStyle || c.Shipper.Window != 5*time.Minute {
					return "environment not applied"
				}
				return ""
			},
		},
		{
			name: "a flag wins over its environment variable",
			args: append([]string{"--window=15m"}, required...),
			env:  map[string]string{"LOKI_SHIPPER_WINDOW": "5m"},
			check: func(c *Config) string {
				if c.Shipper.Window != 15*time.Minute {
					return "the flag lost"
				}
				return ""
			},
		},
		{name: "missing required flags are all named", args: nil, wantErr: "--loki.url is required"},
		{name: "a window that does not divide a day is refused", args: append([]string{"--window=7m"}, required...), wantErr: "must divide 24h"},
		{name: "a sub-second window is refused", args: append([]string{"--window=1500ms"}, required...), wantErr: "whole number of seconds"},
		{name: "a metric-looking query is refused", args: []string{"--loki.url=http://l:3100", "--loki.query=rate({a=\"b\"}[1m])", "--s3.bucket=b"}, wantErr: "stream selector"},
		{name: "a sub-second flush interval is refused", args: append([]string{"--flush-interval=500ms"}, required...), wantErr: "--flush-interval must be 0"},
		{name: "--end without --once is refused", args: append([]string{"--end=1h"}, required...), wantErr: "--end needs --once"},
		{name: "a bad time is explained", args: append([]string{"--start=yesterday"}, required...), wantErr: "neither an RFC 3339 time"},
		{name: "a bad environment value names its variable", args: required, env: map[string]string{"LOKI_SHIPPER_LAG": "soon"}, wantErr: "LOKI_SHIPPER_LAG"},
		{name: "a stray argument is refused", args: append([]string{"ship"}, required...), wantErr: "unexpected argument"},
		{name: "--version needs nothing else", args: []string{"--version"}, check: func(c *Config) string {
			if !c.Version {
				return "version not set"
			}
			return ""
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			getenv := func(k string) string { return tc.env[k] }
			var out bytes.Buffer
			c, err := Parse(tc.args, getenv, &out)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if msg := tc.check(c); msg != "" {
				t.Error(msg)
			}
		})
	}
}

func TestHelpListsEveryFlagWithItsVariable(t *testing.T) {
	var out bytes.Buffer
	_, err := Parse([]string{"--help"}, func(string) string { return "" }, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"--loki.url", "[$LOKI_SHIPPER_LOKI_URL]", "--s3.path-style", "--once", "(default 1m0s)", "AWS chain"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}
