package sink

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"

	smithyhttp "github.com/aws/smithy-go/transport/http"

	"monologue.dev/loki-shipper/internal/retry"
)

func responseError(code int, cause error) error {
	return &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: code}}, Err: cause}
}

func TestS3ErrorsAreRetriedOnlyWhenWorthIt(t *testing.T) {
	s := &S3{cfg: S3Config{Bucket: "b", Prefix: "p"}}
	refused := &net.OpError{Op: "dial", Err: errors.New("connection refused")}
	cases := []struct {
		name      string
		err       error
		transient bool
	}{
		{"a 503 is retried", responseError(503, errors.New("SlowDown")), true},
		{"a 429 is retried", responseError(429, errors.New("TooManyRequests")), true},
		{"a 403 is not", responseError(403, errors.New("AccessDenied")), false},
		{"a 404 bucket is not", responseError(404, errors.New("NoSuchBucket")), false},
		{"a refused connection wrapped with status 0 is retried", responseError(0, refused), true},
		{"a bare network error is retried", refused, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := s.classify(context.Background(), "put", "k", tc.err)
			if retry.IsTransient(err) != tc.transient {
				t.Errorf("transient = %v, want %v (%v)", retry.IsTransient(err), tc.transient, err)
			}
		})
	}
}

func TestS3ConfigValidate(t *testing.T) {
	cases := []struct {
		name    string
		cfg     S3Config
		wantErr bool
	}{
		{"a bucket alone is enough", S3Config{Bucket: "b", Timeout: 1}, false},
		{"no bucket is refused", S3Config{Timeout: 1}, true},
		{"a prefix with a trailing slash is refused", S3Config{Bucket: "b", Prefix: "a/", Timeout: 1}, true},
		{"an endpoint without scheme is refused", S3Config{Bucket: "b", Endpoint: "minio:9000", Timeout: 1}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); (err != nil) != tc.wantErr {
				t.Errorf("Validate() = %v, want error %v", err, tc.wantErr)
			}
		})
	}
}
