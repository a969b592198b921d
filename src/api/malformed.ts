// grpc-js answers INTERNAL when a request cannot be decoded, which blames the
// server for the client's bytes. Decoding instead yields a marker for such
// requests, and an interceptor answers them with INVALID_ARGUMENT.
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

/** The same service definition, with decoders that never throw. */
export function withTolerantDecoding<T extends ServiceDefinition>(service: T): T {
  const wrapped: Record<string, unknown> = {};
  for (const [key, method] of Object.entries(service)) {
    wrapped[key] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return method.requestDeserialize(bytes);
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
