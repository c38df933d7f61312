package backends

import (
	"context"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// advertiseHandshakeV0 makes the broker's ApiVersions answers list
// SaslHandshake from version 0, as Kafka's do; kfake lists it from version
// 1, the only one it serves. librdkafka (kcat) looks for version 0 before
// it authenticates at all, and then sends version 1 since the broker also
// lists SaslAuthenticate. The answers are the broker's own, asked for once
// here, with that one range changed.
func advertiseHandshakeV0(ctx context.Context, c *kfake.Cluster, addr string, clientOpts []kgo.Opt) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, clientOpts...)...)
	if err != nil {
		return fmt.Errorf("kafka api versions: %w", err)
	}
	defer cl.Close()
	req := kmsg.NewPtrApiVersionsRequest()
	req.ClientSoftwareName, req.ClientSoftwareVersion = "devstack", "1"
	base, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("kafka api versions: %w", err)
	}
	for i, k := range base.ApiKeys {
		if k.ApiKey == int16(kmsg.SASLHandshake) {
			base.ApiKeys[i].MinVersion = 0
		}
	}
	c.ControlKey(int16(kmsg.ApiVersions), func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := r.(*kmsg.ApiVersionsRequest)
		// Versions above the one asked for here, and v5 requests that
		// name a cluster, get kfake's own answer.
		if req.Version > base.Version || req.ClusterID != nil {
			return nil, nil, false
		}
		resp := *base
		resp.Version = req.Version
		resp.ApiKeys = slices.Clone(base.ApiKeys)
		return &resp, nil, true
	})
	return nil
}
