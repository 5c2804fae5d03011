/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha) on the core, with
 * the maintained `@grpc/reflection` package, so that grpcurl, `buf curl`
 * and Postman list and call the services without the .proto files.
 *
 * The descriptors are protobuf-es's embedded FileDescriptorProtos (gen/) of
 * chat.proto and grpc/health/v1/health.proto (the file grpc-health-check
 * ships, generated like ours), with their imports. The descriptors
 * proto-loader builds for the health service are not used: they name types
 * relative to their scope, which Go clients (grpcurl, buf) refuse. Each reflection
 * stream reads the next request only once its answers are written
 * (`pause()` until 'drain'), so a client that asks without reading holds a
 * bounded amount of memory, and shutdown ends it with UNAVAILABLE.
 */
import { type DescFile, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type {
  Server,
  ServerDuplexStream,
  UntypedHandleCall,
} from "@grpc/grpc-js";
import { ReflectionService } from "@grpc/reflection";
import type { CallScopes } from "../grpc/call_scope.ts";
import { captureServices, endOnShutdown } from "./services.ts";

/** FileDescriptorProto bytes of `files` and everything they import. */
export function fileDescriptorProtos(files: readonly DescFile[]): Uint8Array[] {
  const seen = new Set<string>();
  const out: Uint8Array[] = [];
  const visit = (file: DescFile) => {
    if (seen.has(file.proto.name)) return;
    seen.add(file.proto.name);
    for (const dep of file.dependencies) visit(dep);
    out.push(toBinary(FileDescriptorProtoSchema, file.proto));
  };
  files.forEach(visit);
  return out;
}

/**
 * Adds ServerReflection v1 and v1alpha to `server`, describing the services
 * in `descriptors` (FileDescriptorProto bytes).
 */
export function addReflection(
  server: Pick<Server, "addService">,
  descriptors: readonly Uint8Array[],
  calls: CallScopes,
): void {
  const reflection = new ReflectionService({
    core: { format: "", fileDescriptorProtos: [...descriptors] },
  } as never);
  for (
    const { definition, implementation } of captureServices((s) =>
      reflection.addToServer(s)
    )
  ) {
    const handler = implementation.ServerReflectionInfo;
    server.addService(definition, {
      ServerReflectionInfo: endOnShutdown(
        calls,
        withBackpressure(handler),
      ),
    });
  }
}

/** Pauses reading while the answers already written wait for the client. */
function withBackpressure(handler: UntypedHandleCall): UntypedHandleCall {
  return ((stream: ServerDuplexStream<unknown, unknown>) => {
    (handler as (s: typeof stream) => void)(stream);
    // After the package's own 'data' listener has written the answer.
    stream.on("data", () => {
      if (!stream.writableNeedDrain) return;
      stream.pause();
      stream.once("drain", () => stream.resume());
    });
  }) as UntypedHandleCall;
}
