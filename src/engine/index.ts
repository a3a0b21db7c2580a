export { Engine, type EngineObserver, type EngineOptions } from './engine.js';
export type { Extent } from './extents.js';
export type * from './types.js';
