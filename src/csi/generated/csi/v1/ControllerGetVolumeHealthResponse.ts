// Original file: csi.proto

import type { VolumeHealth as _csi_v1_VolumeHealth, VolumeHealth__Output as _csi_v1_VolumeHealth__Output } from '../../csi/v1/VolumeHealth.js';

export interface ControllerGetVolumeHealthResponse {
  'volumeHealth'?: (_csi_v1_VolumeHealth | null);
}

export interface ControllerGetVolumeHealthResponse__Output {
  'volumeHealth': (_csi_v1_VolumeHealth__Output | null);
}
