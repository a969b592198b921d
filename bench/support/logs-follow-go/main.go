// A Logs follower in Go for bench/logs-follow.ts, part (a): the same follow as
// the bench's grpc-js client, through the generated Go client, to show how
// much of the write-to-receipt latency is the client's.
//
// Usage: logs-follow-go ADDRESS TASK GO_FILE
// Follows TASK's output (batch: true); creates GO_FILE when it sees the line
// "ready" (the task's writer waits for it); for each line of 19 digits (the
// writer's `date +%s%N`) takes the wall clock on receipt. Prints one JSON line
// at the end of the stream: {"ms": [latency of each line in milliseconds]}.
// LOGS_FOLLOW_CHUNKS=1 follows with chunks: true instead of batch: true (the
// chunk's text split at its newlines); LOGS_FOLLOW_STATIC_WINDOW=1 dials with
// fixed 1 MiB flow-control windows, which turns off grpc-go's BDP pings (one
// per DATA frame received). Client-side choices, for comparison: neither
// changed the median on this machine (bench/RESULTS.md, issue #15).
//
// Usage: logs-follow-go ADDRESS TASK --read
// Part (b): reads TASK's whole log (chunks: true, no follow) once the
// connection is up (a Get first), and prints {"seconds": time from the call
// to the stream's end, "bytes": output bytes received}.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	taskexecutorv1 "github.com/task-executor/task-executor/gen/go/taskexecutor/v1"
	"google.golang.org/grpc"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: logs-follow-go ADDRESS TASK GO_FILE")
		os.Exit(2)
	}
	options := []grpc.DialOption{grpc.WithInsecure()}
	if os.Getenv("LOGS_FOLLOW_STATIC_WINDOW") == "1" {
		options = append(options, grpc.WithInitialWindowSize(1<<20), grpc.WithInitialConnWindowSize(1<<20))
	}
	conn, err := grpc.Dial(os.Args[1], options...)
	check(err)
	defer conn.Close()
	client := taskexecutorv1.NewTaskExecutorServiceClient(conn)
	if os.Args[3] == "--read" {
		readAll(client, os.Args[2])
		return
	}
	chunks := os.Getenv("LOGS_FOLLOW_CHUNKS") == "1"
	stream, err := client.Logs(context.Background(), &taskexecutorv1.LogsRequest{Name: os.Args[2], Follow: true, Batch: !chunks, Chunks: chunks})
	check(err)
	latencies := []float64{}
	for {
		reply, err := stream.Recv()
		received := time.Now().UnixNano()
		if err == io.EOF {
			break
		}
		check(err)
		texts := []string{}
		for _, entry := range reply.Entries {
			texts = append(texts, entry.GetText())
		}
		if chunks {
			texts = strings.Split(strings.TrimSuffix(reply.GetChunk().GetText(), "\n"), "\n")
		}
		for _, text := range texts {
			if text == "ready" {
				check(os.WriteFile(os.Args[3], nil, 0o644))
			}
			if len(text) != 19 {
				continue
			}
			if written, err := strconv.ParseInt(text, 10, 64); err == nil {
				latencies = append(latencies, float64(received-written)/1e6)
			}
		}
	}
	out, err := json.Marshal(map[string][]float64{"ms": latencies})
	check(err)
	fmt.Println(string(out))
}

func readAll(client taskexecutorv1.TaskExecutorServiceClient, task string) {
	_, err := client.Get(context.Background(), &taskexecutorv1.GetRequest{Name: task})
	check(err)
	start := time.Now()
	stream, err := client.Logs(context.Background(), &taskexecutorv1.LogsRequest{Name: task, Chunks: true})
	check(err)
	bytes := 0
	for {
		reply, err := stream.Recv()
		if err == io.EOF {
			break
		}
		check(err)
		chunk := reply.GetChunk()
		bytes += len(chunk.GetText()) + len(chunk.GetData())
	}
	out, err := json.Marshal(map[string]float64{"seconds": time.Since(start).Seconds(), "bytes": float64(bytes)})
	check(err)
	fmt.Println(string(out))
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "logs-follow-go:", err)
		os.Exit(1)
	}
}
