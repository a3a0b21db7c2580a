// Original file: admin.proto

import type { Retention as _tidemark_v1_Retention, Retention__Output as _tidemark_v1_Retention__Output } from '../../tidemark/v1/Retention.js';
import type { InterruptedRestore as _tidemark_v1_InterruptedRestore, InterruptedRestore__Output as _tidemark_v1_InterruptedRestore__Output } from '../../tidemark/v1/InterruptedRestore.js';
import type { Long } from '@grpc/proto-loader';

export interface Volume {
  'name'?: (string);
  'size'?: (number | string | Long);
  'blockSize'?: (number | string | Long);
  'granularity'?: (number | string | Long);
  'createdAt'?: (string);
  'retention'?: (_tidemark_v1_Retention | null);
  'sequence'?: (number | string | Long);
  'earliestRecoverableSequence'?: (number | string | Long);
  'journalBytes'?: (number | string | Long);
  'snapshotCount'?: (number | string | Long);
  'markerCount'?: (number | string | Long);
  'holders'?: (string)[];
  'restoreInterrupted'?: (_tidemark_v1_InterruptedRestore | null);
  'journalSegments'?: (number | string | Long);
  'earliestRecoverableTime'?: (string);
}

export interface Volume__Output {
  'name': (string);
  'size': (string);
  'blockSize': (string);
  'granularity': (string);
  'createdAt': (string);
  'retention': (_tidemark_v1_Retention__Output | null);
  'sequence': (string);
  'earliestRecoverableSequence': (string);
  'journalBytes': (string);
  'snapshotCount': (string);
  'markerCount': (string);
  'holders': (string)[];
  'restoreInterrupted': (_tidemark_v1_InterruptedRestore__Output | null);
  'journalSegments': (string);
  'earliestRecoverableTime': (string);
}
