// Original file: admin.proto

import type { RestoreProgress as _tidemark_v1_RestoreProgress, RestoreProgress__Output as _tidemark_v1_RestoreProgress__Output } from '../../tidemark/v1/RestoreProgress.js';
import type { RestoreResult as _tidemark_v1_RestoreResult, RestoreResult__Output as _tidemark_v1_RestoreResult__Output } from '../../tidemark/v1/RestoreResult.js';

export interface RestoreEvent {
  'progress'?: (_tidemark_v1_RestoreProgress | null);
  'result'?: (_tidemark_v1_RestoreResult | null);
  'event'?: "progress"|"result";
}

export interface RestoreEvent__Output {
  'progress'?: (_tidemark_v1_RestoreProgress__Output | null);
  'result'?: (_tidemark_v1_RestoreResult__Output | null);
  'event'?: "progress"|"result";
}
