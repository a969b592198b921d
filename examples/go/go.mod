module github.com/task-executor/task-executor/examples/go

go 1.19

require (
	github.com/task-executor/task-executor/gen/go v0.0.0
	google.golang.org/grpc v1.33.3
)

// The generated client of this checkout, not a published version.
replace github.com/task-executor/task-executor/gen/go => ../../gen/go
