// Original file: admin.proto


export interface ListVolumesRequest {
}

export interface ListVolumesRequest__Output {
}
