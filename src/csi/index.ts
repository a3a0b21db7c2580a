export { CsiServer, nodeStateDir, socketPathOf, type CsiServerOptions } from './server.js';
export { CSI_PROTO_PATH, CSI_SPEC_VERSION, csiClientConstructor, csiServiceDefinition, type CsiServiceName } from './proto.js';
export { DRIVER_NAME, TOPOLOGY_KEY, Handles } from './handles.js';
export type { CsiContext } from './context.js';
export { readStageRecord, type StageRecord } from './node.js';
export { engineNameFor } from './handles.js';
