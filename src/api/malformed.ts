// grpc-js answers INTERNAL when a request cannot be decoded, which blames the
// server for the client's bytes. Decoding instead yields a marker for such
// requests, and an interceptor answers them with INVALID_ARGUMENT.
//
// Decoding is strict about UTF-8: proto3 requires string fields to be valid
// UTF-8, and the generated decoders would otherwise replace bad bytes with
// U+FFFD, so a task would silently run with an argv, env or path other than
// the one sent.
import { BinaryReader } from '@bufbuild/protobuf/wire';
import { decodeUtf8 } from '../logs/utf8.js';
import {
  Metadata,
  ResponderBuilder,
  ServerInterceptingCall,
  type ServerInterceptor,
  ServerListenerBuilder,
  type ServiceDefinition,
  status,
} from '@grpc/grpc-js';

const MALFORMED = Symbol('malformed request');

interface Malformed {
  [MALFORMED]: string;
}

const isMalformed = (message: unknown): message is Malformed =>
  typeof message === 'object' && message !== null && MALFORMED in message;

/** A message type as ts-proto generates it: it decodes from a reader, which its nested messages share. */
export interface MessageDecoder {
  decode(input: BinaryReader | Uint8Array, length?: number): unknown;
}

export const INVALID_UTF8_MESSAGE =
  'a string field (a name, command, argument, environment variable, path...) holds bytes that are not valid UTF-8; ' +
  'protobuf strings must be UTF-8 text: encode the value as UTF-8';

function decodeUtf8Strictly(bytes: Uint8Array): string {
  const text = decodeUtf8(bytes);
  if (text === undefined) throw new Error(INVALID_UTF8_MESSAGE);
  return text;
}

/**
 * The same service definition, with decoders that never throw and refuse
 * invalid UTF-8; `requestTypes` names each method's request message.
 */
export function withTolerantDecoding<T extends ServiceDefinition>(service: T, requestTypes: Readonly<Record<keyof T & string, MessageDecoder>>): T {
  const types: Readonly<Record<string, MessageDecoder>> = requestTypes;
  const wrapped: Record<string, unknown> = {};
  for (const [key, method] of Object.entries(service)) {
    const type = types[key];
    wrapped[key] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return type ? type.decode(new BinaryReader(bytes, decodeUtf8Strictly)) : method.requestDeserialize(bytes);
        } catch (error) {
          return { [MALFORMED]: error instanceof Error ? error.message : String(error) } satisfies Malformed;
        }
      },
    };
  }
  return wrapped as T;
}

export const rejectMalformedRequests: ServerInterceptor = (method, call) => {
  const listener = new ServerListenerBuilder()
    .withOnReceiveMessage((message, next) => {
      if (!isMalformed(message)) return next(message);
      call.sendStatus({
        code: status.INVALID_ARGUMENT,
        details: `the request is not a valid ${method.path} message: ${message[MALFORMED]}`,
        metadata: new Metadata(),
      });
    })
    .build();
  return new ServerInterceptingCall(call, new ResponderBuilder().withStart((next) => next(listener)).build());
};
