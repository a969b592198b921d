// JSON types of a REST task body, checked before anything reads it. The proto3
// JSON decoder we use (ts-proto's fromJSON) coerces: `"args": "hello"` became
// no args at all and the task ran without them. This walks a body along the
// proto descriptors (gen/taskexecutor.binpb, so a new proto field is covered
// without a change here) plus the original's own Go fields, and refuses a wrong
// JSON type with the field's path: "process.args must be an array of strings".
//
// What stays accepted, as both the original (Go's encoding/json) and proto3
// JSON accept it: null for any field (it means "not set"; the original's
// controller sends "command": null), unknown keys (ignored), proto field names
// as well as their JSON names, and 64-bit integers written as strings.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createFileRegistry, type DescEnum, type DescField, type DescMessage, fromBinary, ScalarType } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { invalidArgument } from '../errors.js';
import { quote } from '../model/validation.js';
import { packageRoot } from '../util/package-root.js';

type Expected =
  | { kind: 'scalar'; scalar: ScalarType }
  | { kind: 'enum'; desc: DescEnum }
  | { kind: 'message'; desc: DescMessage }
  /** A JSON object we do not look into (the original's pod fields, which we accept and ignore). */
  | { kind: 'object' };

type JsonObject = { [key: string]: unknown };

const TASK = 'taskexecutor.v1.Task';

/**
 * Fields of the original's Go types that our proto does not have, by message:
 * the top-level `process` its controller sends, and pod and status fields it
 * may echo back. Only their JSON type is checked.
 */
const ORIGINAL_FIELDS: Record<string, Record<string, Expected | string>> = {
  [TASK]: { process: 'taskexecutor.v1.ProcessSpec', podTemplateSpec: { kind: 'object' }, processStatus: { kind: 'object' }, podStatus: { kind: 'object' } },
  'taskexecutor.v1.EnvVar': { valueFrom: { kind: 'object' } },
};

let taskDescriptor: DescMessage | undefined;

/** The Task message, from the descriptor set that `npm run generate` writes beside the generated code. */
function taskMessage(): DescMessage {
  if (!taskDescriptor) {
    const set = fromBinary(FileDescriptorSetSchema, readFileSync(join(packageRoot(), 'gen', 'taskexecutor.binpb')));
    const found = createFileRegistry(set).getMessage(TASK);
    if (!found) throw new Error(`gen/taskexecutor.binpb has no ${TASK}; run npm run generate`);
    taskDescriptor = found;
  }
  return taskDescriptor;
}

/**
 * Throws INVALID_ARGUMENT naming the first field whose JSON type is wrong.
 * `path` names the task in messages: "" for a request body that is one task,
 * "tasks[2]" for an entry of a list.
 */
export function checkTaskJson(value: unknown, path: string): asserts value is JsonObject {
  check(value, { kind: 'message', desc: taskMessage() }, path);
}

function check(value: unknown, expected: Expected, path: string): void {
  switch (expected.kind) {
    case 'object':
      if (!isObject(value)) throw wrongType(path, 'an object', value);
      return;
    case 'message':
      return checkMessage(value, expected.desc, path);
    case 'enum':
      return checkEnum(value, expected.desc, path);
    case 'scalar':
      return checkScalar(value, expected.scalar, path);
  }
}

function checkMessage(value: unknown, desc: DescMessage, path: string): void {
  // Well-known types have a string form in JSON.
  if (desc.typeName === 'google.protobuf.Timestamp' || desc.typeName === 'google.protobuf.Duration') {
    if (typeof value !== 'string') throw wrongType(path, desc.typeName === 'google.protobuf.Timestamp' ? 'an RFC 3339 time string' : 'a duration string such as "1.5s"', value);
    return;
  }
  if (!isObject(value)) throw wrongType(path, 'an object', value);
  const oneofs = new Map<string, string>();
  for (const field of desc.fields) {
    const key = Object.hasOwn(value, field.jsonName) ? field.jsonName : Object.hasOwn(value, field.name) ? field.name : undefined;
    if (key === undefined || value[key] === null) continue;
    if (field.oneof) {
      const other = oneofs.get(field.oneof.name);
      if (other) throw invalidArgument(`${path || 'the task'} sets both ${other} and ${key}; set exactly one`);
      oneofs.set(field.oneof.name, key);
    }
    checkField(value[key], field, at(path, key));
  }
  for (const [key, extra] of Object.entries(ORIGINAL_FIELDS[desc.typeName] ?? {})) {
    if (value[key] === undefined || value[key] === null) continue;
    check(value[key], typeof extra === 'string' ? { kind: 'message', desc: messageNamed(desc, extra) } : extra, at(path, key));
  }
}

function checkField(value: unknown, field: DescField, path: string): void {
  switch (field.fieldKind) {
    case 'list': {
      const element = listElement(field);
      if (!Array.isArray(value)) throw wrongType(path, `an array of ${plural(element)}`, value);
      value.forEach((item, i) => check(item, element, `${path}[${i}]`));
      return;
    }
    case 'map': {
      if (!isObject(value)) throw wrongType(path, 'an object', value);
      const element: Expected =
        field.mapKind === 'message' ? { kind: 'message', desc: field.message } : field.mapKind === 'enum' ? { kind: 'enum', desc: field.enum } : { kind: 'scalar', scalar: field.scalar };
      for (const [key, item] of Object.entries(value)) check(item, element, `${path}[${JSON.stringify(key)}]`);
      return;
    }
    case 'message':
      return checkMessage(value, field.message, path);
    case 'enum':
      return checkEnum(value, field.enum, path);
    case 'scalar':
      return checkScalar(value, field.scalar, path);
  }
}

function listElement(field: DescField & { fieldKind: 'list' }): Expected {
  switch (field.listKind) {
    case 'message':
      return { kind: 'message', desc: field.message };
    case 'enum':
      return { kind: 'enum', desc: field.enum };
    case 'scalar':
      return { kind: 'scalar', scalar: field.scalar };
  }
}

function checkScalar(value: unknown, scalar: ScalarType, path: string): void {
  switch (scalar) {
    case ScalarType.STRING:
    case ScalarType.BYTES:
      if (typeof value !== 'string') throw wrongType(path, 'a string', value);
      return;
    case ScalarType.BOOL:
      if (typeof value !== 'boolean') throw wrongType(path, 'true or false', value);
      return;
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      if (typeof value !== 'number') throw wrongType(path, 'a number', value);
      return;
    default: {
      // Integers; proto3 JSON writes 64-bit ones as strings, so both forms are accepted.
      const whole = typeof value === 'number' ? Number.isInteger(value) : typeof value === 'string' && /^-?\d+$/.test(value);
      if (!whole) throw wrongType(path, 'a whole number', value);
    }
  }
}

function checkEnum(value: unknown, desc: DescEnum, path: string): void {
  if (typeof value === 'number' && Number.isInteger(value)) return; // proto3 JSON allows the number; validation judges it
  if (typeof value === 'string' && desc.values.some((v) => v.name === value)) return;
  const names = desc.values.filter((v) => v.number !== 0).map((v) => JSON.stringify(v.name));
  throw wrongType(path, `one of ${names.join(', ')}`, value);
}

function messageNamed(from: DescMessage, typeName: string): DescMessage {
  const found = from.file.messages.find((m) => m.typeName === typeName);
  if (!found) throw new Error(`${typeName} is not in ${from.file.name}`);
  return found;
}

function plural(element: Expected): string {
  switch (element.kind) {
    case 'scalar':
      return element.scalar === ScalarType.STRING ? 'strings' : element.scalar === ScalarType.BOOL ? 'booleans' : 'numbers';
    case 'enum':
      return `${element.desc.name} names`;
    default:
      return element.kind === 'message' && element.desc.typeName === 'taskexecutor.v1.EnvVar' ? '{"name", "value"} objects' : 'objects';
  }
}

const at = (path: string, key: string) => (path ? `${path}.${key}` : key);

const isObject = (value: unknown): value is JsonObject => typeof value === 'object' && value !== null && !Array.isArray(value);

function wrongType(path: string, expected: string, value: unknown) {
  const subject = path || 'the request body';
  return invalidArgument(`${subject} must be ${expected}; got ${describe(value)}`);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return `the string ${quote(value)}`;
  return `${typeof value} ${String(value)}`;
}
