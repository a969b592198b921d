// A List/Get client in Go for bench/control-path.ts, item 4: the same loop as
// rps-client.ts (one call at a time, back to back, for a while) through the
// generated Go client, which decodes every reply into Go structs. It shows
// what the executor sustains for a client whose decoding is not the limit.
//
// Usage: rps-client-go ADDRESS SECONDS list PAGE_SIZE | get NAME
// Prints one JSON line: {"rps": N, "tasks": tasks in the last reply}.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	taskexecutorv1 "github.com/task-executor/task-executor/gen/go/taskexecutor/v1"
	"google.golang.org/grpc"
)

func main() {
	if len(os.Args) != 5 || (os.Args[3] != "list" && os.Args[3] != "get") {
		fmt.Fprintln(os.Stderr, "usage: rps-client-go ADDRESS SECONDS list PAGE_SIZE | get NAME")
		os.Exit(2)
	}
	address, method, arg := os.Args[1], os.Args[3], os.Args[4]
	seconds, err := strconv.ParseFloat(os.Args[2], 64)
	check(err)
	conn, err := grpc.Dial(address, grpc.WithInsecure(), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	check(err)
	defer conn.Close()
	client := taskexecutorv1.NewTaskExecutorServiceClient(conn)
	ctx := context.Background()
	tasks := 0
	call := func() {
		if method == "get" {
			_, err := client.Get(ctx, &taskexecutorv1.GetRequest{Name: arg})
			check(err)
			tasks = 1
			return
		}
		size, err := strconv.Atoi(arg)
		check(err)
		pageSize := int32(size)
		reply, err := client.List(ctx, &taskexecutorv1.ListRequest{PageSize: &pageSize})
		check(err)
		tasks = len(reply.Tasks)
	}
	for i := 0; i < 50; i++ { // warm-up
		call()
	}
	count := 0
	start := time.Now()
	end := start.Add(time.Duration(seconds * float64(time.Second)))
	for time.Now().Before(end) {
		call()
		count++
	}
	out, err := json.Marshal(map[string]float64{"rps": float64(count) / time.Since(start).Seconds(), "tasks": float64(tasks)})
	check(err)
	fmt.Println(string(out))
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "rps-client-go:", err)
		os.Exit(1)
	}
}
