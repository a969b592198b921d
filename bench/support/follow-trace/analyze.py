#!/usr/bin/env python3
# Per-step medians of a followed line's way, from the files instrument.patch writes
# (see README.md): /tmp/shimtrace/<shim pid>.txt (stamp, poll return, after writev),
# /tmp/nodetrace/<pid>-<ms>.txt (stamp, then each mark), /tmp/nodetrace/floor-<pid>.txt.
# All times are ns after the line's `date +%s%N` stamp; printed in ms.
import glob
import statistics

KEYS = ['shimPoll', 'shimWritten', 'watch', 'wakeDone', 'readStart', 'syncStart', 'chunkDone', 'parsed',
        'readEnd', 'handler', 'write', 'afterWrite', 'pumped', 'turn', 'sent']

shim = {}
for name in glob.glob('/tmp/shimtrace/*.txt'):
    for line in open(name):
        fields = list(map(int, line.split()))
        shim[fields[0]] = fields[1:]
for name in sorted(glob.glob('/tmp/nodetrace/[0-9]*.txt')):
    cols = {k: [] for k in KEYS}
    for line in open(name):
        if not line.strip():
            continue
        fields = list(map(int, line.split()))
        if fields[0] not in shim:
            continue
        for key, value in zip(KEYS, shim[fields[0]] + fields[1:]):
            cols[key].append(value / 1e6)
    print(name, len(cols['watch']), 'lines (the last file is the Go pass)')
    for key in KEYS:
        print(f'  {key:12s} {statistics.median(cols[key]):.3f}')
    for a, b in zip(KEYS, KEYS[1:]):
        print(f'  {a} -> {b}: {statistics.median([y - x for x, y in zip(cols[a], cols[b])]):.3f}')
for name in glob.glob('/tmp/nodetrace/floor-*.txt'):
    rows = [list(map(int, line.split())) for line in open(name) if line.strip()]
    steps = [statistics.median([(r[j] - (r[j - 1] if j else 0)) / 1e6 for r in rows]) for j in range(3)]
    print('floor: stamp -> call.write %.3f, call.write %.3f, after call.write -> sent %.3f' % tuple(steps))
