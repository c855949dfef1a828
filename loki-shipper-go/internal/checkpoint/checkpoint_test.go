package checkpoint

import (
	"context"
	"strings"
	"testing"
	"time"

	"monologue.dev/loki-shipper/internal/sink"
)

func TestStore(t *testing.T) {
	ctx := context.Background()
	until := time.Date(2024, 1, 2, 10, 1, 0, 0, time.UTC)
	cases := []struct {
		name      string
		stored    string // raw object, "" for none
		save      *Checkpoint
		wantFound bool
		wantErr   string
	}{
		{name: "no checkpoint yet is not an error", wantFound: false},
		{name: "a saved checkpoint loads back", save: &Checkpoint{Query: `{app="api"}`, Window: "1m0s", CompleteUntil: until}, wantFound: true},
		{name: "a corrupt checkpoint is a clear error", stored: "{not json", wantErr: "not valid JSON"},
		{name: "a checkpoint of another version is refused", stored: `{"version": 99}`, wantErr: "version 99"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mem := sink.NewMemory()
			store := Store{Sink: mem}
			if tc.stored != "" {
				_ = mem.Put(ctx, Key, []byte(tc.stored))
			}
			if tc.save != nil {
				if err := store.Save(ctx, *tc.save); err != nil {
					t.Fatal(err)
				}
			}
			cp, found, err := store.Load(ctx)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || found != tc.wantFound {
				t.Fatalf("found=%v err=%v, want found=%v", found, err, tc.wantFound)
			}
			if found && (!cp.CompleteUntil.Equal(until) || cp.Query != tc.save.Query || cp.Version != version) {
				t.Errorf("loaded %+v", cp)
			}
		})
	}
}

func TestCompatible(t *testing.T) {
	cp := Checkpoint{Query: `{app="api"}`, Window: time.Minute.String()}
	cases := []struct {
		name    string
		query   string
		window  time.Duration
		wantErr bool
	}{
		{"the same query and window resume", `{app="api"}`, time.Minute, false},
		{"another query is refused", `{app="web"}`, time.Minute, true},
		{"another window size is refused", `{app="api"}`, 5 * time.Minute, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := cp.Compatible(tc.query, tc.window); (err != nil) != tc.wantErr {
				t.Errorf("Compatible() = %v, want error %v", err, tc.wantErr)
			}
		})
	}
}
