// A minimal task-executor controller in Go.
//
// Creates a task, follows its logs, and watches it until it terminates, then
// deletes it; prints one JSON line with what it saw:
//
//	go run . localhost:5758 my-task
//
// It imports the generated client, github.com/task-executor/task-executor/gen/go,
// which needs google.golang.org/grpc >= 1.32 and google.golang.org/protobuf >= 1.20
// with github.com/golang/protobuf >= 1.4 (see docs/clients.md for building it
// with Debian 12's packages, offline).
// TASK_EXECUTOR_TOKEN: the executor's bearer token, if it requires one.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	taskexecutorv1 "github.com/task-executor/task-executor/gen/go/taskexecutor/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

type report struct {
	Created           string   `json:"created"`
	Lines             []string `json:"lines"`
	Events            []string `json:"events"`
	ExitCode          int32    `json:"exitCode"`
	Missing           string   `json:"missing"`
	DeletionRequested bool     `json:"deletionRequested"`
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: controller ADDRESS TASK-NAME")
		os.Exit(2)
	}
	out, err := run(os.Args[1], os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// stateName is the name of the TaskState oneof's set member, as the proto spells it.
func stateName(task *taskexecutorv1.Task) string {
	switch task.GetStatus().GetState().GetState().(type) {
	case *taskexecutorv1.TaskState_Waiting:
		return "waiting"
	case *taskexecutorv1.TaskState_Running:
		return "running"
	case *taskexecutorv1.TaskState_Terminated:
		return "terminated"
	default:
		return "none"
	}
}

func run(address, name string) (*report, error) {
	ctx := context.Background()
	if token := os.Getenv("TASK_EXECUTOR_TOKEN"); token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	// Plaintext. WithInsecure, not credentials/insecure: that package came in grpc 1.34, Debian 12 has 1.33.
	conn, err := grpc.Dial(address, grpc.WithInsecure())
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	client := taskexecutorv1.NewTaskExecutorServiceClient(conn)
	out := &report{Lines: []string{}, Events: []string{}}

	// Watch first, with every current task as ADDED, so no change is missed.
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watch, err := client.Watch(watchCtx, &taskexecutorv1.WatchRequest{SendInitial: true})
	if err != nil {
		return nil, err
	}
	watched := make(chan error, 1)
	go func() {
		for {
			event, err := watch.Recv()
			if err != nil {
				watched <- err
				return
			}
			if event.GetTask().GetName() != name {
				continue
			}
			state := stateName(event.GetTask())
			out.Events = append(out.Events, event.GetType().String()+":"+state)
			if state == "terminated" {
				watched <- nil
				return
			}
		}
	}()

	unary := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 30*time.Second) }
	createCtx, cancel := unary()
	defer cancel()
	created, err := client.Create(createCtx, &taskexecutorv1.CreateRequest{Task: &taskexecutorv1.Task{
		Name: name,
		Spec: &taskexecutorv1.TaskSpec{Runtime: &taskexecutorv1.TaskSpec_Process{Process: &taskexecutorv1.ProcessSpec{
			Command: []string{"sh", "-c", "echo hello; echo world; exit 3"},
		}}},
	}})
	if err != nil {
		return nil, fmt.Errorf("create: %w", err)
	}
	out.Created = created.GetTask().GetName()

	// Follow the output until the task ends (batched: several lines per message).
	logsCtx, cancelLogs := unary()
	defer cancelLogs()
	logs, err := client.Logs(logsCtx, &taskexecutorv1.LogsRequest{Name: name, Follow: true, Batch: true})
	if err != nil {
		return nil, err
	}
	for {
		response, err := logs.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("logs: %w", err)
		}
		for _, entry := range response.GetEntries() {
			switch content := entry.GetContent().(type) {
			case *taskexecutorv1.LogEntry_Text:
				out.Lines = append(out.Lines, content.Text)
			case *taskexecutorv1.LogEntry_Data:
				out.Lines = append(out.Lines, string(content.Data))
			}
		}
	}

	select {
	case err := <-watched:
		if err != nil {
			return nil, fmt.Errorf("watch: %w", err)
		}
	case <-time.After(30 * time.Second):
		return nil, errors.New("the task never showed up terminated in Watch")
	}
	stopWatch()

	getCtx, cancelGet := unary()
	defer cancelGet()
	final, err := client.Get(getCtx, &taskexecutorv1.GetRequest{Name: name})
	if err != nil {
		return nil, fmt.Errorf("get: %w", err)
	}
	out.ExitCode = final.GetTask().GetStatus().GetState().GetTerminated().GetExitCode()
	_, err = client.Get(getCtx, &taskexecutorv1.GetRequest{Name: "no-such-task"})
	out.Missing = status.Code(err).String()
	if status.Code(err) == codes.OK {
		out.Missing = "OK"
	}
	deleted, err := client.Delete(getCtx, &taskexecutorv1.DeleteRequest{Name: name})
	if err != nil {
		return nil, fmt.Errorf("delete: %w", err)
	}
	out.DeletionRequested = deleted.GetTask().GetDeletionTimestamp() != nil
	return out, nil
}
