/**
 * Test support: a grpc-js client of grpc.health.v1 built from
 * grpc-health-check's own service definition.
 */
import * as grpc from "@grpc/grpc-js";
import { service as healthService } from "grpc-health-check";

/** One health answer. */
export type Status = { status: string };

export interface HealthClient extends grpc.Client {
  check(
    req: { service: string },
    cb: (err: grpc.ServiceError | null, res?: Status) => void,
  ): void;
  watch(req: { service: string }): grpc.ClientReadableStream<Status>;
}

const HealthClientCtor = grpc.makeClientConstructor(
  healthService as unknown as grpc.ServiceDefinition,
  "grpc.health.v1.Health",
) as unknown as new (
  addr: string,
  creds: grpc.ChannelCredentials,
) => HealthClient;

/** A plaintext health client for `host:port`; close it when done. */
export function healthClient(addr: string): HealthClient {
  return new HealthClientCtor(addr, grpc.credentials.createInsecure());
}

/** Check of `service` ("" = the whole server): its status name. */
export function check(client: HealthClient, service: string): Promise<string> {
  return new Promise((resolve, reject) =>
    client.check(
      { service },
      (err, res) => err ? reject(err) : resolve(res!.status),
    )
  );
}
