package backends_test

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/logpipe/logpipe/devstack/backends"
)

func ExampleStart() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := backends.Start(ctx, backends.Options{Without: []string{backends.ES}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()

	cli, err := clientv3.New(clientv3.Config{Endpoints: s.EtcdEndpoints(), Logger: zap.NewNop()})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cli.Close()
	if _, err := cli.Put(ctx, "/logpipe/agents/web-1", `[{"path":"./xx.log"}]`); err != nil {
		fmt.Println(err)
		return
	}
	resp, err := cli.Get(ctx, "/logpipe/agents/web-1")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(resp.Kvs[0].Value))
	fmt.Println(len(s.KafkaAddrs()), "broker;", s.Partitions(), "partitions each in", s.Topics())
	fmt.Printf("esfake: %q\n", s.ESURL())
	// Output:
	// [{"path":"./xx.log"}]
	// 1 broker; 6 partitions each in [logs logs.dlq]
	// esfake: ""
}
