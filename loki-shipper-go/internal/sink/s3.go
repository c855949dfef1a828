package sink

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"monologue.dev/loki-shipper/internal/retry"
)

// S3Config locates the bucket. Credentials come from the standard AWS chain
// (environment, shared files, web identity, instance role); the endpoint and
// region may come from AWS_ENDPOINT_URL(_S3) and AWS_REGION too.
type S3Config struct {
	Bucket    string
	Prefix    string
	Endpoint  string
	Region    string
	PathStyle bool
	Timeout   time.Duration
}

func (c *S3Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Bucket, "s3.bucket", "", "S3 bucket to write to (required).")
	fs.StringVar(&c.Prefix, "s3.prefix", "", `Key prefix of this Space's data, e.g. "spaces/prod/api"; the checkpoint is <prefix>/_checkpoint.json.`)
	fs.StringVar(&c.Endpoint, "s3.endpoint", "", "S3 API endpoint URL for non-AWS stores (MinIO, Ceph, ...); default: AWS_ENDPOINT_URL or AWS.")
	fs.StringVar(&c.Region, "s3.region", "", "S3 region; default: AWS_REGION or the shared AWS config.")
	fs.BoolVar(&c.PathStyle, "s3.path-style", false, "Address buckets as <endpoint>/<bucket> instead of <bucket>.<endpoint> (most non-AWS stores need this).")
	fs.DurationVar(&c.Timeout, "s3.timeout", time.Minute, "Timeout of one S3 request; a request that times out is retried.")
}

func (c *S3Config) Validate() error {
	var errs []error
	if c.Bucket == "" {
		errs = append(errs, errors.New("--s3.bucket is required"))
	}
	if strings.HasPrefix(c.Prefix, "/") || strings.HasSuffix(c.Prefix, "/") {
		errs = append(errs, fmt.Errorf("--s3.prefix %q must not start or end with /", c.Prefix))
	}
	if c.Endpoint != "" && !strings.HasPrefix(c.Endpoint, "http://") && !strings.HasPrefix(c.Endpoint, "https://") {
		errs = append(errs, fmt.Errorf("--s3.endpoint %q must be an http:// or https:// URL", c.Endpoint))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("--s3.timeout must be positive, got %s", c.Timeout))
	}
	return errors.Join(errs...)
}

// S3 is the Sink for any S3 API.
type S3 struct {
	client *s3.Client
	cfg    S3Config
}

func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	var opts []func(*awsconfig.LoadOptions) error
	if cfg.Region != "" {
		opts = append(opts, awsconfig.WithRegion(cfg.Region))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("loading AWS configuration: %w", err)
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		o.UsePathStyle = cfg.PathStyle
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		// One attempt per call: the shipper retries without limit itself,
		// with its own backoff, and counts the retries in its metrics.
		o.RetryMaxAttempts = 1
	})
	return &S3{client: client, cfg: cfg}, nil
}

func (s *S3) key(key string) string {
	if s.cfg.Prefix == "" {
		return key
	}
	return s.cfg.Prefix + "/" + key
}

func (s *S3) Describe() string {
	if s.cfg.Prefix == "" {
		return "s3://" + s.cfg.Bucket
	}
	return "s3://" + s.cfg.Bucket + "/" + s.cfg.Prefix
}

func (s *S3) Put(ctx context.Context, key string, body []byte) error {
	attempt, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	_, err := s.client.PutObject(attempt, &s3.PutObjectInput{
		Bucket:        aws.String(s.cfg.Bucket),
		Key:           aws.String(s.key(key)),
		Body:          bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))),
	})
	return s.classify(ctx, "put", key, err)
}

func (s *S3) Get(ctx context.Context, key string) ([]byte, error) {
	attempt, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	out, err := s.client.GetObject(attempt, &s3.GetObjectInput{
		Bucket: aws.String(s.cfg.Bucket),
		Key:    aws.String(s.key(key)),
	})
	if err != nil {
		var noKey *types.NoSuchKey
		if errors.As(err, &noKey) {
			return nil, ErrNotFound
		}
		return nil, s.classify(ctx, "get", key, err)
	}
	defer out.Body.Close()
	body, err := io.ReadAll(out.Body)
	return body, s.classify(ctx, "get", key, err)
}

func (s *S3) List(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	input := &s3.ListObjectsV2Input{Bucket: aws.String(s.cfg.Bucket), Prefix: aws.String(s.key(prefix))}
	for {
		attempt, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		out, err := s.client.ListObjectsV2(attempt, input)
		cancel()
		if err != nil {
			return nil, s.classify(ctx, "list", prefix, err)
		}
		for _, object := range out.Contents {
			keys = append(keys, strings.TrimPrefix(aws.ToString(object.Key), s.key("")))
		}
		if !aws.ToBool(out.IsTruncated) {
			return keys, nil // S3 lists in key order
		}
		input.ContinuationToken = out.NextContinuationToken
	}
}

// classify marks the errors worth retrying: 429, 5xx, network errors and a
// request that timed out while the shipper itself is not stopping.
func (s *S3) classify(ctx context.Context, op, key string, err error) error {
	if err == nil {
		return nil
	}
	err = fmt.Errorf("s3 %s %s/%s: %w", op, s.Describe(), key, err)
	if ctx.Err() != nil {
		return err
	}
	// The SDK wraps a failed send in a ResponseError too, with status 0.
	var resp *smithyhttp.ResponseError
	if errors.As(err, &resp) && resp.Response != nil && resp.HTTPStatusCode() != 0 {
		code := resp.HTTPStatusCode()
		if code == http.StatusTooManyRequests || code >= 500 {
			return retry.Transient(err, 0)
		}
		return err
	}
	// Credentials that cannot be found are a configuration error; anything
	// else without an HTTP response is the network.
	if strings.Contains(err.Error(), "failed to retrieve credentials") {
		return err
	}
	return retry.Transient(err, 0)
}
