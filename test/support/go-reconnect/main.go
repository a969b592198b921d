// For test/integration/go-example.test.ts: a grpc-go client against an
// executor whose --grpc-max-connection-idle closes its connection. It makes a
// call, waits until the server has closed the now idle connection (the
// channel leaves READY), and makes another call on the same ClientConn, as a
// controller that polls rarely does.
//
// Usage: go-reconnect ADDRESS
// Prints one JSON line: {"first": tasks listed, "leftReady": the state after READY, "second": tasks listed}.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	taskexecutorv1 "github.com/task-executor/task-executor/gen/go/taskexecutor/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go-reconnect ADDRESS")
		os.Exit(2)
	}
	conn, err := grpc.Dial(os.Args[1], grpc.WithInsecure())
	check(err)
	defer conn.Close()
	client := taskexecutorv1.NewTaskExecutorServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	first, err := client.List(ctx, &taskexecutorv1.ListRequest{})
	check(err)
	if state := conn.GetState(); state != connectivity.Ready {
		check(fmt.Errorf("after the first call the channel is %v, not READY", state))
	}
	// The server's GOAWAY moves the channel out of READY; nothing else here would.
	if !conn.WaitForStateChange(ctx, connectivity.Ready) {
		check(fmt.Errorf("the server did not close the idle connection within the deadline"))
	}
	leftReady := conn.GetState().String()
	second, err := client.List(ctx, &taskexecutorv1.ListRequest{})
	check(err)
	out, err := json.Marshal(map[string]interface{}{"first": len(first.Tasks), "leftReady": leftReady, "second": len(second.Tasks)})
	check(err)
	fmt.Println(string(out))
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-reconnect:", err)
		os.Exit(1)
	}
}
