// A grpc.health.v1 client built from the proto that grpc-health-check ships.
import { type ChannelCredentials, loadPackageDefinition, type ServiceError, type Client } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath } from 'grpc-health-check';

export const HealthCheckResponse_ServingStatus = { UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2 } as const;

type HealthCheck = (
  request: { service: string },
  callback: (error: ServiceError | null, response: { status: number }) => void,
) => void;

interface HealthStub extends Client {
  check: HealthCheck;
}

const definition = loadSync(protoPath, { enums: Number });
const Health = (loadPackageDefinition(definition) as any).grpc.health.v1.Health as new (address: string, creds: ChannelCredentials) => HealthStub;

export class HealthClient {
  private readonly stub: HealthStub;
  constructor(address: string, creds: ChannelCredentials) {
    this.stub = new Health(address, creds);
  }
  check(request: { service: string }, callback: (error: ServiceError | null, response: { status: number }) => void): void {
    this.stub.check(request, callback);
  }
  close(): void {
    this.stub.close();
  }
}
