import * as fs from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import { packageVersion } from '../../src/util/package.js';
import { NODE, startHarness, type Harness } from './helpers.js';

describe('CSI Identity service', () => {
  let h: Harness;

  beforeEach(async () => {
    h = await startHarness();
  });

  afterEach(async () => {
    await h.stop();
  });

  it('names the driver csi.tidemark.dev with the package version', async () => {
    const info = await h.identity.call<{ name: string; vendorVersion: string; manifest: Record<string, string> }>('GetPluginInfo');
    expect(info.name).toBe('csi.tidemark.dev');
    expect(info.vendorVersion).toBe(packageVersion());
    expect(info.vendorVersion).toMatch(/^\d+\.\d+\.\d+/);
    expect(info.manifest).toEqual({ csiSpec: '1.13.0', node: NODE });
  });

  it('advertises the controller, topology, group, metadata services and online expansion', async () => {
    const { capabilities } = await h.identity.call<{ capabilities: { service?: { type: string } | null; volumeExpansion?: { type: string } | null }[] }>(
      'GetPluginCapabilities',
    );
    const services = capabilities.filter((c) => c.service).map((c) => c.service!.type);
    expect(services.sort()).toEqual(
      ['CONTROLLER_SERVICE', 'GROUP_CONTROLLER_SERVICE', 'SNAPSHOT_METADATA_SERVICE', 'VOLUME_ACCESSIBILITY_CONSTRAINTS'].sort(),
    );
    expect(capabilities.filter((c) => c.volumeExpansion).map((c) => c.volumeExpansion!.type)).toEqual(['OFFLINE']);
  });

  it('probes ready while serving, not ready once the daemon says so, and unhealthy without a store', async () => {
    expect(await h.identity.call('Probe')).toEqual({ ready: { value: true } });
    await h.stop();
    let ready = false;
    h = await startHarness({ ready: () => ready });
    expect(await h.identity.call('Probe')).toEqual({ ready: { value: false } });
    ready = true;
    expect(await h.identity.call('Probe')).toEqual({ ready: { value: true } });
    // The store vanishing under a running daemon is the unhealthy case.
    await fs.rm(h.store, { recursive: true, force: true });
    expect(await h.identity.code('Probe')).toBe(grpc.status.FAILED_PRECONDITION);
  });
});
