// A List/Get client in Go for bench/control-path.ts, item 4: the same loop as
// rps-client.ts (one call at a time, back to back, for a while) through the
// generated Go client, which decodes every reply into Go structs. It shows
// what the executor sustains for a client whose decoding is not the limit.
//
// Usage: rps-client-go ADDRESS SECONDS list PAGE_SIZE | list-compact PAGE_SIZE | get NAME | rest URL
// list-compact asks for TASK_VIEW_COMPACT (no specs); rest GETs URL (the REST
// drop-in's /getTasks) over one keep-alive connection and decodes the JSON
// into the original's task shape, as its Go controller does.
// Prints one JSON line: {"rps": N, "tasks": tasks in the last reply}.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	taskexecutorv1 "github.com/task-executor/task-executor/gen/go/taskexecutor/v1"
	"google.golang.org/grpc"
)

func main() {
	modes := map[string]bool{"list": true, "list-compact": true, "get": true, "rest": true}
	if len(os.Args) != 5 || !modes[os.Args[3]] {
		fmt.Fprintln(os.Stderr, "usage: rps-client-go ADDRESS SECONDS list PAGE_SIZE | list-compact PAGE_SIZE | get NAME | rest URL")
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
	httpClient := &http.Client{Timeout: 30 * time.Second}
	call := func() {
		if method == "rest" {
			response, err := httpClient.Get(arg)
			check(err)
			var reply []originalTask
			err = json.NewDecoder(response.Body).Decode(&reply)
			check(err)
			_, _ = io.Copy(io.Discard, response.Body) // so the connection is reused
			response.Body.Close()
			if response.StatusCode != http.StatusOK {
				check(fmt.Errorf("GET %s: %s", arg, response.Status))
			}
			tasks = len(reply)
			return
		}
		if method == "get" {
			_, err := client.Get(ctx, &taskexecutorv1.GetRequest{Name: arg})
			check(err)
			tasks = 1
			return
		}
		size, err := strconv.Atoi(arg)
		check(err)
		pageSize := int32(size)
		request := &taskexecutorv1.ListRequest{PageSize: &pageSize}
		if method == "list-compact" {
			view := taskexecutorv1.TaskView_TASK_VIEW_COMPACT
			request.View = &view
		}
		reply, err := client.List(ctx, request)
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

// The fields of a task the original's Go controller reads from GET /getTasks
// (its Task type: name, process, processStatus); encoding/json skips the rest.
type originalTask struct {
	Name    string `json:"name"`
	Process *struct {
		Command    []string          `json:"command"`
		Args       []string          `json:"args"`
		WorkingDir string            `json:"workingDir"`
		Env        []json.RawMessage `json:"env"`
	} `json:"process"`
	ProcessStatus *struct {
		Waiting *struct {
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"waiting"`
		Running *struct {
			StartedAt string `json:"startedAt"`
		} `json:"running"`
		Terminated *struct {
			ExitCode   int32  `json:"exitCode"`
			Reason     string `json:"reason"`
			StartedAt  string `json:"startedAt"`
			FinishedAt string `json:"finishedAt"`
		} `json:"terminated"`
	} `json:"processStatus"`
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "rps-client-go:", err)
		os.Exit(1)
	}
}
