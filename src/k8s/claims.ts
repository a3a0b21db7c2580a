import type { V1PersistentVolume, V1PersistentVolumeClaim } from '@kubernetes/client-node';
import { DRIVER_NAME } from '../csi/index.js';
import type { Kube } from './kube.js';

/** A claim that is a tidemark volume: where it lives and what the engine calls it. */
export interface TidemarkClaim {
  claim: string;
  namespace: string;
  pvc: V1PersistentVolumeClaim;
  pv: V1PersistentVolume;
  volumeHandle: string;
  /** The node named by the handle: volumes live on exactly one node. */
  node: string;
  /** The engine's volume name (the handle's second part). */
  volume: string;
  volumeMode: 'Filesystem' | 'Block';
}

/** Why a claim cannot be acted on; `reason` is the CamelCase word a condition carries. */
export interface ClaimProblem {
  claim: string;
  reason: 'ClaimNotFound' | 'ClaimNotBound' | 'NotTidemarkVolume';
  message: string;
}

export type ClaimLookup = { ok: true; value: TidemarkClaim } | { ok: false; problem: ClaimProblem };

/**
 * Follows a PVC to its PV and checks that the PV is one of ours. The handle has the form
 * "<node>:<volume>" (src/csi/handles.ts), so it says both where the volume lives and its
 * engine name.
 */
export async function lookupClaim(kube: Kube, namespace: string, claim: string): Promise<ClaimLookup> {
  const pvc = await kube.getClaim(namespace, claim);
  if (!pvc) return fail(claim, 'ClaimNotFound', `PersistentVolumeClaim ${namespace}/${claim} does not exist`);
  const pvName = pvc.spec?.volumeName;
  if (!pvName || pvc.status?.phase !== 'Bound') {
    return fail(claim, 'ClaimNotBound', `PersistentVolumeClaim ${namespace}/${claim} is not bound to a volume yet (phase ${pvc.status?.phase ?? 'unknown'}); a pod that uses it makes it bind`);
  }
  const pv = await kube.getVolume(pvName);
  if (!pv) return fail(claim, 'ClaimNotBound', `PersistentVolume ${pvName} of claim ${namespace}/${claim} does not exist`);
  const csi = pv.spec?.csi;
  if (!csi || csi.driver !== DRIVER_NAME) {
    return fail(claim, 'NotTidemarkVolume', `claim ${namespace}/${claim} is bound to ${pvName}, which ${csi ? `belongs to driver ${csi.driver}` : 'is not a CSI volume'}, not ${DRIVER_NAME}`);
  }
  const parts = csi.volumeHandle.split(':');
  if (parts.length !== 2 || !parts[0] || !parts[1]) {
    return fail(claim, 'NotTidemarkVolume', `volume handle "${csi.volumeHandle}" of ${pvName} is not a tidemark volume handle (<node>:<volume>)`);
  }
  return {
    ok: true,
    value: {
      claim,
      namespace,
      pvc,
      pv,
      volumeHandle: csi.volumeHandle,
      node: parts[0],
      volume: parts[1],
      volumeMode: pv.spec?.volumeMode === 'Block' ? 'Block' : 'Filesystem',
    },
  };
}

function fail(claim: string, reason: ClaimProblem['reason'], message: string): ClaimLookup {
  return { ok: false, problem: { claim, reason, message } };
}
