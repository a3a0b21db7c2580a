// Original file: admin.proto

import type { Retention as _tidemark_v1_Retention, Retention__Output as _tidemark_v1_Retention__Output } from '../../tidemark/v1/Retention.js';

export interface SetRetentionRequest {
  'name'?: (string);
  'retention'?: (_tidemark_v1_Retention | null);
}

export interface SetRetentionRequest__Output {
  'name': (string);
  'retention': (_tidemark_v1_Retention__Output | null);
}
