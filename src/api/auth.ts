// gRPC side of access control: server credentials and the bearer-token check.
import {
  Metadata,
  ResponderBuilder,
  ServerCredentials,
  ServerInterceptingCall,
  type ServerInterceptor,
  ServerListenerBuilder,
  status,
} from '@grpc/grpc-js';
import { bearerTokenMatches, type Security, UNAUTHENTICATED_MESSAGE } from '../security.js';

export function serverCredentials(security: Security): ServerCredentials {
  if (!security.tls) return ServerCredentials.createInsecure();
  const { cert, key, clientCa } = security.tls;
  return ServerCredentials.createSsl(clientCa ?? null, [{ cert_chain: cert, private_key: key }], clientCa !== undefined);
}

/** Health checks stay open so that kubelet probes need no secret. */
const isExempt = (path: string) => path.startsWith('/grpc.health.v1.Health/');

export function bearerTokenInterceptor(token: string): ServerInterceptor {
  return (method, call) => {
    if (isExempt(method.path)) return new ServerInterceptingCall(call);
    const listener = new ServerListenerBuilder()
      .withOnReceiveMetadata((metadata, next) => {
        if (bearerTokenMatches(metadata.get('authorization')[0], token)) next(metadata);
        else call.sendStatus({ code: status.UNAUTHENTICATED, details: UNAUTHENTICATED_MESSAGE, metadata: new Metadata() });
      })
      .build();
    const responder = new ResponderBuilder().withStart((next) => next(listener)).build();
    return new ServerInterceptingCall(call, responder);
  };
}
