import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { PROTO_LOADER_OPTIONS } from '../util/grpc.js';

/** Beside this module, where `npm run build` copies it (hack/copy-protos.mjs), like admin.proto. */
export const CSI_PROTO_PATH = fileURLToPath(new URL('csi.proto', import.meta.url));

/** The CSI release csi.proto follows; reported in the plugin manifest. */
export const CSI_SPEC_VERSION = '1.13.0';

export type CsiServiceName = 'Identity' | 'Controller' | 'GroupController' | 'SnapshotMetadata' | 'Node';

let definition: protoLoader.PackageDefinition | undefined;

function packageDefinition(): protoLoader.PackageDefinition {
  definition ??= protoLoader.loadSync(CSI_PROTO_PATH, PROTO_LOADER_OPTIONS);
  return definition;
}

/** One `csi.v1` service, for `grpc.Server.addService`. */
export function csiServiceDefinition(name: CsiServiceName): grpc.ServiceDefinition {
  return packageDefinition()[`csi.v1.${name}`] as grpc.ServiceDefinition;
}

/** A generic client for one `csi.v1` service; tests and tools use it, the daemon does not. */
export function csiClientConstructor(name: CsiServiceName): grpc.ServiceClientConstructor {
  return grpc.makeGenericClientConstructor(csiServiceDefinition(name), name);
}
