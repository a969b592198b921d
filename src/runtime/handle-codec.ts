// Checked reading of persisted runtime handles. A handle is JSON written by
// some executor release, possibly an earlier (or later) one than this: every
// field is checked before a runtime acts on it, so a renamed or retyped field
// is a clear error naming the field, never a silently wrong pid or path.

/** A persisted handle that does not have the shape its runtime reads; `field` is its path, e.g. "cgroup.dirs.memory". */
export class HandleDecodeError extends Error {
  constructor(
    readonly field: string,
    readonly problem: string,
  ) {
    super(field ? `field "${field}" ${problem}` : `the handle ${problem}`);
    this.name = 'HandleDecodeError';
  }
}

/**
 * The fields of one JSON object, each read with its expected type. Absent
 * (or undefined) optional fields read as undefined; present fields of the
 * wrong type, null included, are errors. Unknown fields are ignored, so a
 * later release may add optional fields without a new handle version.
 */
export class Fields {
  private constructor(
    private readonly values: Readonly<Record<string, unknown>>,
    private readonly path: string,
  ) {}

  static of(raw: unknown, path = ''): Fields {
    if (!isObject(raw)) throw new HandleDecodeError(path, `must be an object, not ${describe(raw)}`);
    return new Fields(raw, path);
  }

  has(key: string): boolean {
    return this.get(key) !== undefined;
  }

  string(key: string): string {
    return this.required(key, this.optionalString(key));
  }

  optionalString(key: string): string | undefined {
    return this.read(key, 'a string', (v): v is string => typeof v === 'string');
  }

  /** A non-negative safe integer (pids, counts, sizes). */
  integer(key: string): number {
    return this.required(key, this.optionalInteger(key));
  }

  optionalInteger(key: string): number | undefined {
    return this.read(key, 'a non-negative integer', (v): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0);
  }

  /** A finite number (e.g. applied CPU millicores, which may be fractional). */
  optionalNumber(key: string): number | undefined {
    return this.read(key, 'a finite number', (v): v is number => typeof v === 'number' && Number.isFinite(v));
  }

  object<T>(key: string, decode: (fields: Fields) => T): T {
    return this.required(key, this.optionalObject(key, decode));
  }

  optionalObject<T>(key: string, decode: (fields: Fields) => T): T | undefined {
    const value = this.get(key);
    return value === undefined ? undefined : decode(Fields.of(value, this.pathOf(key)));
  }

  /**
   * A nested value read by another decoder, e.g. a wrapped runtime's handle
   * read by that runtime's decodeHandle; its errors name the field's full path.
   */
  optionalNested<T>(key: string, decode: (raw: unknown) => T): T | undefined {
    const value = this.get(key);
    if (value === undefined) return undefined;
    try {
      return decode(value);
    } catch (error) {
      if (!(error instanceof HandleDecodeError)) throw error;
      throw new HandleDecodeError(error.field ? `${this.pathOf(key)}.${error.field}` : this.pathOf(key), error.problem);
    }
  }

  /** An object whose values are all strings (e.g. cgroup controller -> directory). */
  stringMap(key: string): Record<string, string> {
    // fromEntries defines own properties: a "__proto__" key stays a key.
    return this.object(key, (fields) => Object.fromEntries(fields.keys().map((name) => [name, fields.string(name)])));
  }

  /** One of a few literal values (e.g. a version number). */
  oneOf<const T extends readonly (string | number)[]>(key: string, allowed: T): T[number] {
    const value = this.get(key);
    const found = allowed.find((candidate) => candidate === value);
    if (found === undefined) {
      throw new HandleDecodeError(this.pathOf(key), `must be one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}, not ${describe(value)}`);
    }
    return found;
  }

  private keys(): string[] {
    return Object.keys(this.values);
  }

  private get(key: string): unknown {
    // Own properties only: "__proto__" or "toString" in a handle are just unknown fields.
    return Object.hasOwn(this.values, key) ? this.values[key] : undefined;
  }

  private read<T>(key: string, expected: string, is: (value: unknown) => value is T): T | undefined {
    const value = this.get(key);
    if (value === undefined) return undefined;
    if (!is(value)) throw new HandleDecodeError(this.pathOf(key), `must be ${expected}, not ${describe(value)}`);
    return value;
  }

  private required<T>(key: string, value: T | undefined): T {
    if (value === undefined) throw new HandleDecodeError(this.pathOf(key), 'is missing');
    return value;
  }

  private pathOf(key: string): string {
    return this.path ? `${this.path}.${key}` : key;
  }
}

/** The object without its undefined fields, so a decoded handle has the keys the persisted one had. */
export function definedOnly<T extends object>(object: T): T {
  for (const key of Object.keys(object) as (keyof T)[]) if (object[key] === undefined) delete object[key];
  return object;
}

function isObject(value: unknown): value is Readonly<Record<string, unknown>> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A value as a message shows it: its type, and short values themselves. */
function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'missing';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)}`;
  if (typeof value === 'number' || typeof value === 'boolean') return `the ${typeof value} ${String(value)}`;
  return `an ${typeof value}`;
}
