/**
 * What the CSI node service runs on the host: attaching NBD exports as block devices,
 * probing and making filesystems, mounting, growing, usage. Every failure is a TidemarkError
 * that names the tool and carries its own message.
 */
export { Attacher, type AttachMode, type Attachment, type AttacherOptions } from './attach.js';
export type { DirectServer, DirectSession, KernelDevice } from './kernel-attach.js';
export { runTool, type ToolResult } from './exec.js';
export { FILESYSTEMS, deviceSize, filesystemUsage, growFilesystem, growUnmounted, makeFilesystem, probeDevice, type Filesystem, type FilesystemUsage } from './filesystem.js';
export { bindMount, isMountPoint, mountAt, mountFilesystem, readMounts, unmountAll, type MountEntry } from './mounts.js';
