export { AdminClient, type DaemonStatus, type DiffResult, type ReadOptions, type WriteOptions, type WriteResult } from './client.js';
export { TIDEMARK_CODE_KEY } from './errors.js';
export { ADMIN_PROTO_PATH, adminServiceDefinition } from './proto.js';
export { AdminServer, type AdminServerOptions } from './server.js';
