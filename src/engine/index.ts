export { Engine, type EngineOptions } from './engine.js';
export type { Extent } from './extents.js';
export type * from './types.js';
