// A grpc.health.v1 client built from the proto that grpc-health-check ships.
import { type ChannelCredentials, Client, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath } from 'grpc-health-check';

export const HealthCheckResponse_ServingStatus = { UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2 } as const;

type HealthCallback = (error: ServiceError | null, response: { status: number }) => void;

const Check = (() => {
  const service = loadSync(protoPath, { enums: Number })['grpc.health.v1.Health'];
  const method = service && !('format' in service) ? service.Check : undefined;
  if (!method) throw new Error(`${protoPath} defines no grpc.health.v1.Health/Check`);
  return method;
})();

/** The status of a decoded HealthCheckResponse (enums as numbers); -1 when it has none. */
function statusOf(response: object | undefined): number {
  return response && 'status' in response && typeof response.status === 'number' ? response.status : -1;
}

export class HealthClient {
  private readonly client: Client;
  constructor(address: string, creds: ChannelCredentials) {
    this.client = new Client(address, creds);
  }
  check(request: { service: string }, callback: HealthCallback): void {
    this.client.makeUnaryRequest(Check.path, Check.requestSerialize, Check.responseDeserialize, request, (error, response) =>
      callback(error, { status: statusOf(response) }),
    );
  }
  close(): void {
    this.client.close();
  }
}
