// Original file: admin.proto


export interface DeleteVolumeResponse {
}

export interface DeleteVolumeResponse__Output {
}
