import * as fs from 'node:fs/promises';
import type * as grpc from '@grpc/grpc-js';
import { packageVersion } from '../util/package.js';
import type { CsiContext } from './context.js';
import { failedPrecondition } from './errors.js';
import { DRIVER_NAME } from './handles.js';
import type { GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse, GetPluginInfoRequest, GetPluginInfoResponse, IdentityHandlers, PluginCapability, ProbeRequest, ProbeResponse } from './messages.js';
import { CSI_SPEC_VERSION } from './proto.js';
import { unary } from './rpc.js';

/**
 * What the plugin offers. Expansion: the engine grows a volume while it is in use. A kernel
 * nbd device is told the new size over netlink and its filesystem grows mounted (ONLINE); an
 * nbdfuse attachment keeps the size it learned when it connected, so there the device and
 * filesystem grow when the volume is next staged (OFFLINE).
 */
export function pluginCapabilities(expansion: 'ONLINE' | 'OFFLINE'): PluginCapability[] {
  return [
    { service: { type: 'CONTROLLER_SERVICE' } },
    { service: { type: 'VOLUME_ACCESSIBILITY_CONSTRAINTS' } },
    { service: { type: 'GROUP_CONTROLLER_SERVICE' } },
    { service: { type: 'SNAPSHOT_METADATA_SERVICE' } },
    // SNAPSHOT_ACCESSIBILITY_CONSTRAINTS (alpha) would fit, snapshots live on one node, but
    // csi-sanity v5.6.0 compares the topology a driver reports with reflection-based equality,
    // which fails on protobuf internals for every driver that reports one. Left out until then.
    { volumeExpansion: { type: expansion } },
  ];
}

/** The CSI Identity service: who the plugin is, what it offers, and whether it is ready. */
export function identityService(ctx: CsiContext, expansion: 'ONLINE' | 'OFFLINE' = 'OFFLINE'): grpc.UntypedServiceImplementation {
  const capabilities = pluginCapabilities(expansion);
  return {
    GetPluginInfo: unary<GetPluginInfoRequest, GetPluginInfoResponse>(
      ctx,
      'GetPluginInfo',
      () => ({ name: DRIVER_NAME, vendorVersion: packageVersion(), manifest: { csiSpec: CSI_SPEC_VERSION, node: ctx.handles.nodeId } }),
      { readOnly: true },
    ),

    GetPluginCapabilities: unary<GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse>(ctx, 'GetPluginCapabilities', () => ({ capabilities }), {
      readOnly: true,
    }),

    /**
     * Unhealthy (an error) when the store cannot be reached: nothing will work until someone
     * fixes the disk. Not ready (false) while the daemon is still starting or already stopping.
     */
    Probe: unary<ProbeRequest, ProbeResponse>(
      ctx,
      'Probe',
      async () => {
        try {
          await fs.statfs(ctx.engine.store);
        } catch (err) {
          throw failedPrecondition(`the store ${ctx.engine.store} cannot be reached: ${(err as Error).message}`);
        }
        return { ready: { value: ctx.ready() } };
      },
      { readOnly: true },
    ),
  } satisfies IdentityHandlers;
}
