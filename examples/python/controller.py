#!/usr/bin/env python3
"""A minimal task-executor controller in Python.

Creates a task, follows its logs, and watches it until it terminates, then
deletes it; prints one JSON line with what it saw. Generate the stubs first
(scripts/generate-python.sh, into examples/python/gen), then:

    python3 examples/python/controller.py localhost:5758 my-task

Needs grpcio and protobuf (Debian: python3-grpcio, python3-protobuf).
TASK_EXECUTOR_TOKEN: the executor's bearer token, if it requires one.
TASK_EXECUTOR_STUBS: where the generated stubs are (default: ./gen here).
"""
import json
import os
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("TASK_EXECUTOR_STUBS") or os.path.join(HERE, "gen"))

import grpc  # noqa: E402
from taskexecutor.v1 import task_pb2  # noqa: E402
from taskexecutor.v1 import task_executor_service_pb2 as api  # noqa: E402
from taskexecutor.v1 import task_executor_service_pb2_grpc as api_grpc  # noqa: E402


def main() -> None:
    address, name = sys.argv[1], sys.argv[2]
    token = os.environ.get("TASK_EXECUTOR_TOKEN")
    metadata = [("authorization", f"Bearer {token}")] if token else []

    with grpc.insecure_channel(address) as channel:
        stub = api_grpc.TaskExecutorServiceStub(channel)

        # Watch first, with every current task as ADDED, so no change is missed.
        events = []
        ended = threading.Event()
        watch = stub.Watch(api.WatchRequest(send_initial=True), metadata=metadata)

        def follow_watch() -> None:
            try:
                for event in watch:
                    if event.task.name != name:
                        continue
                    state = event.task.status.state.WhichOneof("state")
                    events.append(f"{api.WatchEventType.Name(event.type)}:{state}")
                    if state == "terminated":
                        ended.set()
                        return
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.CANCELLED:
                    raise

        watcher = threading.Thread(target=follow_watch, daemon=True)
        watcher.start()

        task = task_pb2.Task(
            name=name,
            spec=task_pb2.TaskSpec(process=task_pb2.ProcessSpec(command=["sh", "-c", "echo hello; echo world; exit 3"])),
        )
        created = stub.Create(api.CreateRequest(task=task), metadata=metadata, timeout=30)

        # Follow the output until the task ends (batched: several lines per message).
        lines = []
        for response in stub.Logs(api.LogsRequest(name=name, follow=True, batch=True), metadata=metadata, timeout=30):
            for entry in response.entries:
                lines.append(entry.text if entry.HasField("text") else entry.data.decode(errors="replace"))

        if not ended.wait(timeout=30):
            raise SystemExit("the task never showed up terminated in Watch")
        watch.cancel()
        watcher.join()

        final = stub.Get(api.GetRequest(name=name), metadata=metadata, timeout=10).task
        try:
            stub.Get(api.GetRequest(name="no-such-task"), metadata=metadata, timeout=10)
            missing = "OK"
        except grpc.RpcError as error:
            missing = error.code().name
        deleted = stub.Delete(api.DeleteRequest(name=name), metadata=metadata, timeout=10).task

    print(json.dumps({
        "created": created.task.name,
        "lines": lines,
        "events": events,
        "exitCode": final.status.state.terminated.exit_code,
        "missing": missing,
        "deletionRequested": deleted.HasField("deletion_timestamp"),
    }))


if __name__ == "__main__":
    main()
