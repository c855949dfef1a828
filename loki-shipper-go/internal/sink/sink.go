// Package sink stores whole objects by key: Parquet windows and the
// checkpoint. A Put replaces the object under its key, which is what makes
// a retried or restarted upload overwrite instead of duplicate.
package sink

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
)

// ErrNotFound is returned by Get for a key that holds no object.
var ErrNotFound = errors.New("object not found")

// Sink is where the shipper writes. Keys are relative to the sink's prefix.
// Errors worth retrying are marked with retry.Transient.
type Sink interface {
	Put(ctx context.Context, key string, body []byte) error
	Get(ctx context.Context, key string) ([]byte, error)
	// List returns the keys that start with prefix, sorted.
	List(ctx context.Context, prefix string) ([]string, error)
	// Describe names the location for logs, e.g. "s3://bucket/prefix".
	Describe() string
}

// Memory is a Sink in memory, for tests and the write-path benchmark.
type Memory struct {
	mu      sync.Mutex
	objects map[string][]byte
	puts    int
	// Fail, when set, is called before each operation; an error it returns
	// is the operation's result (to simulate an outage).
	Fail func(op, key string) error
}

func NewMemory() *Memory { return &Memory{objects: map[string][]byte{}} }

func (m *Memory) Put(_ context.Context, key string, body []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Fail != nil {
		if err := m.Fail("put", key); err != nil {
			return err
		}
	}
	m.objects[key] = append([]byte(nil), body...)
	m.puts++
	return nil
}

func (m *Memory) Get(_ context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Fail != nil {
		if err := m.Fail("get", key); err != nil {
			return nil, err
		}
	}
	body, ok := m.objects[key]
	if !ok {
		return nil, ErrNotFound
	}
	return append([]byte(nil), body...), nil
}

func (m *Memory) List(_ context.Context, prefix string) ([]string, error) {
	m.mu.Lock()
	fail := m.Fail
	m.mu.Unlock()
	if fail != nil {
		if err := fail("list", prefix); err != nil {
			return nil, err
		}
	}
	return m.Keys(prefix), nil
}

func (m *Memory) Describe() string { return "memory" }

// Keys lists the stored keys with the given prefix, sorted.
func (m *Memory) Keys(prefix string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var keys []string
	for k := range m.objects {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// Puts counts successful Puts, overwrites included.
func (m *Memory) Puts() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.puts
}
