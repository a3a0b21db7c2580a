import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import type { CsiContext } from './context.js';
import { failedPrecondition, invalid } from './errors.js';
import { findVolume } from './lookup.js';
import type { Empty, NodeGetCapabilitiesResponse, NodeGetInfoResponse, NodeUnpublishVolumeRequest } from './messages.js';
import { unary } from './rpc.js';

/**
 * The CSI Node service, as far as it goes without the data path: who this node is and what
 * it can do. Staging and publishing (NBD attach, mkfs, mount) come with the NBD server; until
 * then NodeStageVolume and NodePublishVolume answer UNIMPLEMENTED and no capability is
 * advertised, so nothing can be published here, and NodeUnpublishVolume only confirms that
 * (which is what a CO's clean-up of an unpublished volume asks).
 */
export function nodeService(ctx: CsiContext): grpc.UntypedServiceImplementation {
  return {
    NodeGetInfo: unary<Empty, NodeGetInfoResponse>(
      ctx,
      'NodeGetInfo',
      () => ({ nodeId: ctx.handles.nodeId, maxVolumesPerNode: 0, accessibleTopology: ctx.handles.topology() }),
      { readOnly: true },
    ),
    NodeGetCapabilities: unary<Empty, NodeGetCapabilitiesResponse>(ctx, 'NodeGetCapabilities', () => ({ capabilities: [] }), { readOnly: true }),
    NodeUnpublishVolume: unary<NodeUnpublishVolumeRequest, Empty>(ctx, 'NodeUnpublishVolume', async (req, ids) => {
      if (!req.volumeId) throw invalid('volume_id is required');
      if (!req.targetPath) throw invalid('target_path is required');
      const info = findVolume(ctx, req.volumeId);
      Object.assign(ids, { volume: info.name, targetPath: req.targetPath });
      if (await isMountPoint(req.targetPath)) {
        throw failedPrecondition(`${req.targetPath} is a mount point, but this build of tidemark cannot publish volumes and so does not unmount it`);
      }
      return {};
    }),
  };
}

/** Whether a path is a mount point, from /proc/self/mountinfo (the 5th field, octal-escaped). */
export async function isMountPoint(target: string): Promise<boolean> {
  const wanted = path.resolve(target);
  const table = await fs.readFile('/proc/self/mountinfo', 'utf8');
  return table.split('\n').some((line) => {
    const mountPoint = line.split(' ')[4];
    return mountPoint !== undefined && mountPoint.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))) === wanted;
  });
}
