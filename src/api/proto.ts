import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { PROTO_LOADER_OPTIONS } from '../util/grpc.js';

/**
 * Beside this module: `npm run build` copies every .proto file under src/ next to the compiled
 * JavaScript (hack/copy-protos.mjs), so dist/ runs without src/.
 */
export const ADMIN_PROTO_PATH = fileURLToPath(new URL('admin.proto', import.meta.url));

let cached: grpc.ServiceDefinition | undefined;

/** The `tidemark.v1.Admin` service definition, loaded once per process. */
export function adminServiceDefinition(): grpc.ServiceDefinition {
  if (!cached) {
    const definition = protoLoader.loadSync(ADMIN_PROTO_PATH, PROTO_LOADER_OPTIONS);
    cached = definition['tidemark.v1.Admin'] as grpc.ServiceDefinition;
  }
  return cached;
}

/** A generic client constructor for the Admin service; the typed wrapper is AdminClient. */
export function adminClientConstructor(): grpc.ServiceClientConstructor {
  return grpc.makeGenericClientConstructor(adminServiceDefinition(), 'tidemark.v1.Admin');
}

/** gRPC's address for a unix socket path (relative paths are resolved first). */
export function unixAddress(socketPath: string): string {
  return `unix:${path.resolve(socketPath)}`;
}

/** Messages carry data in chunks of at most this size. */
export const CHUNK_SIZE = 1024 * 1024;

/** Leaves room over CHUNK_SIZE for the other fields of a message. */
export const MAX_MESSAGE_BYTES = 8 * 1024 * 1024;

export const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
  'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
};
