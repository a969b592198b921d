// Lets a handler hand grpc-js a response it has already serialized, for the
// one hot path where building message objects for the generic encoder costs
// more than everything else together (batched Logs: hundreds of thousands of
// lines a second, each a string decoded from bytes only to be encoded back).
// A pre-encoded response is still a proper message object for any code that
// looks at it; only the serializer takes its bytes as they are.
import type { ServiceDefinition } from '@grpc/grpc-js';

export const ENCODED = Symbol('pre-encoded message');

export interface PreEncoded {
  /** The message's protobuf encoding; the serializer sends exactly these bytes. */
  readonly [ENCODED]: Buffer;
}

const isPreEncoded = (message: unknown): message is PreEncoded =>
  typeof message === 'object' && message !== null && ENCODED in message;

/** The same service definition, with serializers that send pre-encoded responses as they are. */
export function withPreEncodedResponses<T extends ServiceDefinition>(service: T): T {
  const wrapped: Record<string, unknown> = {};
  for (const [key, method] of Object.entries(service)) {
    wrapped[key] = {
      ...method,
      responseSerialize: (message: unknown) => (isPreEncoded(message) ? message[ENCODED] : method.responseSerialize(message)),
    };
  }
  return wrapped as T;
}
