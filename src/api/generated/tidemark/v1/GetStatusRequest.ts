// Original file: admin.proto


export interface GetStatusRequest {
}

export interface GetStatusRequest__Output {
}
