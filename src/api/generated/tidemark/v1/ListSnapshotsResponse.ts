// Original file: admin.proto

import type { Snapshot as _tidemark_v1_Snapshot, Snapshot__Output as _tidemark_v1_Snapshot__Output } from '../../tidemark/v1/Snapshot.js';

export interface ListSnapshotsResponse {
  'snapshots'?: (_tidemark_v1_Snapshot)[];
}

export interface ListSnapshotsResponse__Output {
  'snapshots': (_tidemark_v1_Snapshot__Output)[];
}
