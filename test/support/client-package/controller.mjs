// A controller written against the published client only: it is copied into a
// scratch project that installed the packed package, and imports nothing but
// `task-executor/client`. Prints one JSON line with what it saw.
import { processTask, status, TaskExecutorClient, WatchEventType } from 'task-executor/client';

const [address, name] = process.argv.slice(2);
const client = new TaskExecutorClient(address);
const stateOf = (task) => task?.status?.state?.state;

// Watch first, with the current tasks as ADDED, so no change of the task can be missed.
const stopWatching = new AbortController();
const events = [];
const watched = (async () => {
  try {
    for await (const event of client.watch({ sendInitial: true }, { signal: stopWatching.signal })) {
      if (event.task?.name !== name) continue;
      events.push(`${WatchEventType[event.type]}:${stateOf(event.task)?.$case}`);
      if (stateOf(event.task)?.$case === 'terminated') stopWatching.abort(new Error('seen the end'));
    }
  } catch (error) {
    if (!stopWatching.signal.aborted) throw error;
    return String(error.message); // the signal's reason, as the client promises
  }
  return 'stream ended';
})();

const created = await client.create(processTask(name, ['sh', '-c', 'echo hello; echo world; exit 3']));
const lines = [];
for await (const response of client.logs({ name, follow: true, batch: true }, { timeoutMs: 30_000 })) {
  for (const entry of response.entries) lines.push(entry.content?.$case === 'text' ? entry.content.value : '<bytes>');
}
const watchEnd = await watched;
const final = await client.get(name);

const codeOf = (promise) => promise.then(() => 'OK', (error) => status[error.code] ?? String(error));
const missing = await codeOf(client.get('no-such-task'));
const expired = await codeOf(client.get(name, { deadline: new Date(Date.now() - 1000) }));
const aborted = AbortSignal.abort(new Error('caller gave up'));
const abortedWith = await client.get(name, { signal: aborted }).then(() => 'OK', (error) => error.message);
const all = [];
for await (const task of client.listAll({ pageSize: 1 })) all.push(task.name);
const deleted = await client.delete(name);
client.close();

console.log(JSON.stringify({
  created: created.name,
  lines,
  events,
  watchEnd,
  exitCode: stateOf(final)?.value.exitCode,
  missing,
  expired,
  abortedWith,
  listed: all,
  deletionRequested: deleted.deletionTimestamp !== undefined,
}));
