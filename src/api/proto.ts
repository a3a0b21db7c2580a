import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/**
 * The package root, found from this module's place in the build: dist/src/api/proto.js sits
 * three levels below it. It holds package.json (the version); nothing under src/ is read at
 * run time.
 */
export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/**
 * Beside this module: `npm run build` copies every .proto file under src/ next to the compiled
 * JavaScript (hack/copy-protos.mjs), so dist/ runs without src/.
 */
export const ADMIN_PROTO_PATH = fileURLToPath(new URL('admin.proto', import.meta.url));

/**
 * uint64 fields arrive as decimal strings (`longs: String`) so that no value is silently
 * rounded; the server and the client turn them into numbers only after checking they are
 * safe integers. `defaults` fills absent scalars with their zero value; `oneofs` names the
 * member of a oneof that is set, and presence of proto3 `optional` fields.
 */
const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

let cached: grpc.ServiceDefinition | undefined;

/** The `tidemark.v1.Admin` service definition, loaded once per process. */
export function adminServiceDefinition(): grpc.ServiceDefinition {
  if (!cached) {
    const definition = protoLoader.loadSync(ADMIN_PROTO_PATH, LOADER_OPTIONS);
    cached = definition['tidemark.v1.Admin'] as grpc.ServiceDefinition;
  }
  return cached;
}

/** A generic client constructor for the Admin service; the typed wrapper is AdminClient. */
export function adminClientConstructor(): grpc.ServiceClientConstructor {
  return grpc.makeGenericClientConstructor(adminServiceDefinition(), 'tidemark.v1.Admin');
}

let version: string | undefined;

/** The version in package.json, reported by GetStatus and `tidemark --version`. */
export function packageVersion(): string {
  if (version === undefined) {
    try {
      const parsed = JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version?: unknown };
      version = typeof parsed.version === 'string' ? parsed.version : 'unknown';
    } catch {
      version = 'unknown';
    }
  }
  return version;
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
