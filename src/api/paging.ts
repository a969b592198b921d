// Bounded replies. gRPC clients reject a reply over 4 MiB by default, and a
// task's spec may be about 1 MiB, so lists are cut into pages (List,
// AIP-158) by count and by encoded size; SetTasks cuts its reply the same way.
import { Task } from '../../gen/taskexecutor/v1/task.js';
import { type ListRequest, ListResponse } from '../../gen/taskexecutor/v1/task_executor_service.js';
import { invalidArgument } from '../errors.js';
import { quote, validateName } from '../model/validation.js';
import type { TaskRecord } from '../model/task.js';
import { type TaskView, taskToWire } from './convert.js';
import { ENCODED, type PreEncoded } from './pre-encoded.js';
import { lengthDelimitedHeader, varintLength } from './protobuf-wire.js';

/**
 * Most bytes of tasks in one reply: half the default client limit, leaving
 * room for the reply's other fields and for a misjudged bound. The largest
 * task the spec limits allow encodes to about 1.1 MiB, 1.4 MiB with a 256 KiB
 * status message (test/integration/bounded-replies.test.ts), so one task always fits.
 */
export const MAX_REPLY_BYTES = 2 * 1024 * 1024;
/** Room kept for the reply's other fields: next_page_token (a name of at most 253 bytes, in base64) and a view. */
const OTHER_FIELDS_BYTES = 1024;
export const DEFAULT_PAGE_SIZE = 500;
export const MAX_PAGE_SIZE = 1000;

/**
 * The first tasks of `records` converted by `toWire`, as many as fit in one
 * reply and at most `maxCount`; always at least one, so a list never stalls.
 * Sizes are those of the ts-proto encoder grpc-js sends with.
 */
export function takeWithinBound(records: readonly TaskRecord[], toWire: (record: TaskRecord) => Task, maxCount = Infinity): Task[] {
  const taken: Task[] = [];
  let bytes = OTHER_FIELDS_BYTES;
  for (const record of records) {
    if (taken.length >= maxCount) break;
    const task = toWire(record);
    const size = encodedSize(task);
    bytes += 1 + varintLength(size) + size; // one element of `repeated Task tasks = 1`: tag, length, message
    if (bytes > MAX_REPLY_BYTES && taken.length > 0) break;
    taken.push(task);
  }
  return taken;
}

/**
 * Encodings of wire tasks, which taskToWire shares while their record is
 * unchanged: a task is encoded once per change, both to measure a page and to
 * send it (encodeListResponse).
 */
const encodings = new WeakMap<Task, Uint8Array>();

function encodedTask(task: Task): Uint8Array {
  let bytes = encodings.get(task);
  if (bytes === undefined) {
    bytes = Task.encode(task).finish();
    encodings.set(task, bytes);
  }
  return bytes;
}

const encodedSize = (task: Task): number => encodedTask(task).length;

/**
 * The bytes of a ListResponse, made of its tasks' cached encodings: the
 * same message ListResponse.encode makes (a repeated field may be
 * written in any order relative to the others), without encoding every task
 * of every page again on every call.
 */
function encodeListResponse(response: ListResponse): Buffer {
  const parts: Uint8Array[] = [];
  for (const task of response.tasks) {
    const bytes = encodedTask(task);
    parts.push(lengthDelimitedHeader(TASKS_FIELD, bytes.length), bytes);
  }
  parts.push(ListResponse.encode({ tasks: [], nextPageToken: response.nextPageToken }).finish());
  return Buffer.concat(parts);
}

/** `repeated Task tasks = 1` in ListResponse. */
const TASKS_FIELD = 1;

/** One List page of `records` (every task, sorted by name) in `view`, already encoded (see pre-encoded.ts). */
export function listPage(records: readonly TaskRecord[], request: ListRequest, view: TaskView = 'full'): ListResponse & PreEncoded {
  const size = pageSize(request.pageSize);
  const after = request.pageToken ? decodePageToken(request.pageToken) : undefined;
  // The manager hands out the same sorted array until a task changes, so a
  // page asked for again (a controller polling an unchanged list) is answered
  // with the bytes already made for it.
  let pages = pagesOf.get(records);
  if (!pages) pagesOf.set(records, (pages = new Map()));
  const key = `${view}/${size}/${after ?? ''}`;
  const cached = pages.get(key);
  if (cached) return cached;
  const page = buildPage(records, after, size, view);
  if (pages.size < MAX_CACHED_PAGES) pages.set(key, page);
  return page;
}

/** Pages already answered, per version of the list (a version is dropped with its array). */
const pagesOf = new WeakMap<readonly TaskRecord[], Map<string, ListResponse & PreEncoded>>();
const MAX_CACHED_PAGES = 64;

function buildPage(records: readonly TaskRecord[], after: string | undefined, size: number, view: TaskView): ListResponse & PreEncoded {
  // Resuming after a name, not at an index, keeps a token valid while tasks
  // come and go between pages. Same comparison as the manager's sort.
  const rest = after === undefined ? records : records.filter((record) => record.name > after);
  const tasks = takeWithinBound(rest, (record) => taskToWire(record, view), size);
  const response = { tasks, nextPageToken: pageTokenAfter(rest, tasks) };
  return { ...response, [ENCODED]: encodeListResponse(response) };
}

/** The token that continues `records` after `taken`, its first tasks; empty when every one was taken. */
export function pageTokenAfter(records: readonly TaskRecord[], taken: readonly Task[]): string {
  const last = taken.at(-1);
  return taken.length < records.length && last ? encodePageToken(last.name) : '';
}

function pageSize(requested: number | undefined): number {
  if (requested === undefined || requested === 0) return DEFAULT_PAGE_SIZE;
  if (requested < 0) {
    throw invalidArgument(`page_size must not be negative; got ${requested} (0 or unset means ${DEFAULT_PAGE_SIZE}, at most ${MAX_PAGE_SIZE})`);
  }
  return Math.min(requested, MAX_PAGE_SIZE);
}

// The token is opaque to clients; inside it is the last name returned. The
// prefix leaves room for other kinds of token later.
const TOKEN_PREFIX = 'after:';
const MAX_TOKEN_LENGTH = 512;

function encodePageToken(lastName: string): string {
  return Buffer.from(TOKEN_PREFIX + lastName).toString('base64url');
}

function decodePageToken(token: string): string {
  const text = token.length <= MAX_TOKEN_LENGTH ? Buffer.from(token, 'base64url').toString('utf8') : '';
  const name = text.startsWith(TOKEN_PREFIX) ? text.slice(TOKEN_PREFIX.length) : undefined;
  // Node's base64url decoder skips characters it does not know, so a token
  // counts only if it is exactly what encodePageToken makes of its name.
  if (name === undefined || encodePageToken(name) !== token || !isValidName(name)) {
    throw invalidArgument(
      `page_token ${quote(token, 40)} is not a page token this service issued: ` +
        'pass the next_page_token of the previous reply unchanged, or leave it empty for the first page',
    );
  }
  return name;
}

function isValidName(name: string): boolean {
  try {
    validateName(name);
    return true;
  } catch {
    return false;
  }
}
