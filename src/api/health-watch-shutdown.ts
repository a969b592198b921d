// grpc.health.v1 Health/Watch (served by grpc-health-check) is a stream that
// never ends by itself, like our Watch: a client doing client-side health
// checking (grpc-go's healthCheckConfig, a load balancer) keeps one open per
// connection. The health service has no way to end it, so the server's close
// waited out its whole grace (5 s) for it. This interceptor ends it with
// UNAVAILABLE once the server is closing, after the NOT_SERVING the health
// service has just sent it, as server-stream.ts does for our own streams.
import { Metadata, ResponderBuilder, ServerInterceptingCall, type ServerInterceptor, ServerListenerBuilder, status } from '@grpc/grpc-js';
import { SHUTTING_DOWN } from './server-stream.js';

const HEALTH_WATCH = '/grpc.health.v1.Health/Watch';

/** `closing`: aborted when the server closes. */
export function endHealthWatchesOnClose(closing: AbortSignal): ServerInterceptor {
  return (method, call) => {
    if (method.path !== HEALTH_WATCH) return new ServerInterceptingCall(call);
    // A status the call sends later waits for a message it is sending (grpc-js), so NOT_SERVING comes first.
    const end = () => call.sendStatus({ code: status.UNAVAILABLE, details: SHUTTING_DOWN, metadata: new Metadata() });
    // grpc-js reports every end of the call's HTTP/2 stream as a cancellation, normal ends too.
    const listener = new ServerListenerBuilder().withOnCancel(() => closing.removeEventListener('abort', end)).build();
    const responder = new ResponderBuilder()
      .withStart((next) => {
        next(listener);
        if (closing.aborted) end();
        else closing.addEventListener('abort', end, { once: true });
      })
      .build();
    return new ServerInterceptingCall(call, responder);
  };
}
