import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BIN } from '../cli/harness.js';
import {
  ALL_OPTIONAL,
  CHART,
  ControlPlane,
  DRIVER,
  HELM,
  HostProcess,
  K8S_BIN,
  NAMESPACE,
  RELEASE,
  ROOT,
  built,
  container,
  freePort,
  helmTemplate,
  must,
  run,
  suiteNeeding,
  until,
  type Container,
  type PodSpec,
} from './harness.js';
import { needing } from '../support/requirements.js';

/**
 * The chart against a real control plane of our own (hack/control-plane.sh: etcd,
 * kube-apiserver, kube-controller-manager, snapshot-controller):
 *   - `kubectl apply --dry-run=server` of the chart with default values, with every optional
 *     part, and of manifests/;
 *   - a real `helm install` (every optional part), then `kubectl auth can-i` as its
 *     ServiceAccounts: each verb the components use is allowed, and a list of things they
 *     must not do is refused;
 *   - the installed DaemonSet's containers started as host processes with exactly the
 *     arguments and environment the chart gives them (paths moved under a temporary
 *     directory, API access through the ServiceAccount's token): the sidecars connect to the
 *     driver, a claim is provisioned, capacity is published, a VolumeSnapshot becomes ready,
 *     and the daemon's reconcilers record a RecoveryPoint and restore it into a new claim,
 *     all with the chart's RBAC and without a single "forbidden".
 */

const NODE = 'tm-chart-node';
const APP_NAMESPACE = 'tm-chart-app';
const NODE_SA = `system:serviceaccount:${NAMESPACE}:${RELEASE}-node`;
const CONTROLLER_SA = `system:serviceaccount:${NAMESPACE}:${RELEASE}-snapshot-controller`;

/** The ServiceMonitor CRD of prometheus-operator, from its Go module (no cluster has it here). */
const PROMETHEUS_OPERATOR = 'github.com/prometheus-operator/prometheus-operator@v0.85.0';
function serviceMonitorCrd(): string | undefined {
  const go = spawnSync('sh', ['-c', `command -v go || ls /usr/local/go/bin/go`], { encoding: 'utf8' }).stdout.trim().split('\n')[0];
  if (!go) return undefined;
  const out = spawnSync(go, ['mod', 'download', '-json', PROMETHEUS_OPERATOR], { encoding: 'utf8', cwd: os.tmpdir(), env: { ...process.env, GOFLAGS: '-mod=mod' } });
  const dir = (JSON.parse(out.stdout || '{}') as { Dir?: string }).Dir;
  const file = dir && path.join(dir, 'example', 'prometheus-operator-crd', 'monitoring.coreos.com_servicemonitors.yaml');
  return file && fs.existsSync(file) ? file : undefined;
}

const suite = suiteNeeding([
  built('helm'),
  built('kubectl'),
  built('etcd'),
  built('kube-apiserver'),
  built('kube-controller-manager'),
  built('snapshot-controller'),
  { what: 'go', present: () => serviceMonitorCrd() !== undefined, install: `Go, to fetch the ServiceMonitor CRD from ${PROMETHEUS_OPERATOR}` },
]);

/** One `kubectl auth can-i` question: "verb resource[/subresource]" and where. */
interface Question {
  who: string;
  verb: string;
  resource: string;
  /** a namespace; '*' for all namespaces; undefined for cluster-scoped resources */
  namespace?: string;
  why: string;
}

const q = (who: string, why: string, spec: string): Question[] => {
  // "get,list pods @ns" / "update recoverypoints.tidemark.dev/status @*" / "get persistentvolumes"
  const [verbs, resource, where] = spec.split(' ');
  return verbs!.split(',').map((verb) => ({ who, verb, resource: resource!, ...(where ? { namespace: where.slice(1) } : {}), why }));
};

const ALLOWED: Question[] = [
  // tidemark serve: the reconcilers
  ...q(NODE_SA, 'reconciler', 'get,list,watch recoverypoints.tidemark.dev @*'),
  ...q(NODE_SA, 'reconciler', 'get,list,watch,patch volumerestores.tidemark.dev @*'),
  ...q(NODE_SA, 'reconciler', 'update recoverypoints.tidemark.dev/status @*'),
  ...q(NODE_SA, 'reconciler', 'update volumerestores.tidemark.dev/status @*'),
  ...q(NODE_SA, 'reconciler', 'get,create persistentvolumeclaims @shop'),
  ...q(NODE_SA, 'reconciler', 'get persistentvolumes'),
  ...q(NODE_SA, 'reconciler', 'list pods @shop'),
  ...q(NODE_SA, 'reconciler', 'create events @shop'),
  ...q(NODE_SA, 'reconciler', 'get,create,delete volumesnapshots.snapshot.storage.k8s.io @shop'),
  ...q(NODE_SA, 'reconciler', 'get,create volumesnapshotcontents.snapshot.storage.k8s.io'),
  // csi-provisioner
  ...q(NODE_SA, 'provisioner', 'get,list,watch,create,patch,delete persistentvolumes'),
  ...q(NODE_SA, 'provisioner', 'get,list,watch,update persistentvolumeclaims @*'),
  ...q(NODE_SA, 'provisioner', 'list,watch storageclasses.storage.k8s.io'),
  ...q(NODE_SA, 'provisioner', 'get,list,watch,update volumesnapshots.snapshot.storage.k8s.io @*'),
  ...q(NODE_SA, 'provisioner', 'get volumesnapshotcontents.snapshot.storage.k8s.io'),
  ...q(NODE_SA, 'provisioner', 'create,patch events @*'),
  ...q(NODE_SA, 'provisioner', `list,watch,create,update,delete csistoragecapacities.storage.k8s.io @${NAMESPACE}`),
  ...q(NODE_SA, 'provisioner', `get pods @${NAMESPACE}`),
  // csi-snapshotter
  ...q(NODE_SA, 'snapshotter', 'list,watch volumesnapshotclasses.snapshot.storage.k8s.io'),
  ...q(NODE_SA, 'snapshotter', 'get,list,watch,patch volumesnapshotcontents.snapshot.storage.k8s.io'),
  ...q(NODE_SA, 'snapshotter', 'update,patch volumesnapshotcontents.snapshot.storage.k8s.io/status'),
  ...q(NODE_SA, 'snapshotter', 'list,watch volumegroupsnapshotclasses.groupsnapshot.storage.k8s.io'),
  ...q(NODE_SA, 'snapshotter', 'get,list,watch,patch volumegroupsnapshotcontents.groupsnapshot.storage.k8s.io'),
  ...q(NODE_SA, 'snapshotter', 'update,patch volumegroupsnapshotcontents.groupsnapshot.storage.k8s.io/status'),
  // csi-resizer
  ...q(NODE_SA, 'resizer', 'get,list,watch,patch persistentvolumes'),
  ...q(NODE_SA, 'resizer', 'patch persistentvolumeclaims/status @*'),
  ...q(NODE_SA, 'resizer', 'get,list,watch pods @*'),
  ...q(NODE_SA, 'resizer', 'get,list,watch volumeattributesclasses.storage.k8s.io'),
  ...q(NODE_SA, 'resizer', `get,create,update leases.coordination.k8s.io @${NAMESPACE}`),
  // snapshot-controller
  ...q(CONTROLLER_SA, 'snapshot-controller', 'list,watch nodes'),
  ...q(CONTROLLER_SA, 'snapshot-controller', 'get,list,watch persistentvolumes'),
  ...q(CONTROLLER_SA, 'snapshot-controller', 'get,list,watch,update persistentvolumeclaims @*'),
  ...q(CONTROLLER_SA, 'snapshot-controller', 'get,list,watch,create,update,patch,delete volumesnapshotcontents.snapshot.storage.k8s.io'),
  ...q(CONTROLLER_SA, 'snapshot-controller', 'patch volumesnapshotcontents.snapshot.storage.k8s.io/status'),
  ...q(CONTROLLER_SA, 'snapshot-controller', 'get,list,watch,create,update,patch,delete volumesnapshots.snapshot.storage.k8s.io @*'),
  ...q(CONTROLLER_SA, 'snapshot-controller', 'update,patch volumesnapshots.snapshot.storage.k8s.io/status @*'),
  ...q(CONTROLLER_SA, 'snapshot-controller', 'get,list,watch,create,update,patch,delete volumegroupsnapshotcontents.groupsnapshot.storage.k8s.io'),
  ...q(CONTROLLER_SA, 'snapshot-controller', 'get,list,watch,update,patch volumegroupsnapshots.groupsnapshot.storage.k8s.io @*'),
  ...q(CONTROLLER_SA, 'snapshot-controller', 'create,patch events @*'),
  ...q(CONTROLLER_SA, 'snapshot-controller', `get,create,update leases.coordination.k8s.io @${NAMESPACE}`),
];

const DENIED: Question[] = [
  ...q(NODE_SA, 'no secrets anywhere', 'list,get,watch secrets @*'),
  ...q(NODE_SA, 'no secrets in its own namespace', `get secrets @${NAMESPACE}`),
  ...q(NODE_SA, 'runs no pods', 'create,delete pods @*'),
  ...q(NODE_SA, 'no exec into pods', 'create pods/exec @*'),
  ...q(NODE_SA, 'reads nodes from NodeGetInfo, not the API', 'get,list nodes'),
  ...q(NODE_SA, 'PVs are patched, never replaced', 'update persistentvolumes'),
  ...q(NODE_SA, 'never deletes claims', 'delete persistentvolumeclaims @*'),
  ...q(NODE_SA, 'specs are immutable: status only', 'update,delete recoverypoints.tidemark.dev @*'),
  ...q(NODE_SA, 'no deletes of snapshot contents', 'delete volumesnapshotcontents.snapshot.storage.k8s.io'),
  ...q(NODE_SA, 'capacity only in its namespace', 'create csistoragecapacities.storage.k8s.io @default'),
  ...q(NODE_SA, 'leases only in its namespace', 'create,update leases.coordination.k8s.io @kube-system'),
  ...q(NODE_SA, 'no RBAC changes', 'create,bind,escalate clusterroles.rbac.authorization.k8s.io'),
  ...q(NODE_SA, 'no RBAC changes', 'create clusterrolebindings.rbac.authorization.k8s.io'),
  ...q(NODE_SA, 'no impersonation', 'impersonate serviceaccounts @*'),
  ...q(NODE_SA, 'no ServiceAccount tokens', `create serviceaccounts/token @${NAMESPACE}`),
  ...q(NODE_SA, 'does not touch the CSIDriver', 'update,delete csidrivers.storage.k8s.io'),
  ...q(CONTROLLER_SA, 'no secrets anywhere', 'list,get secrets @*'),
  ...q(CONTROLLER_SA, 'makes no volumes', 'create,delete persistentvolumes'),
  ...q(CONTROLLER_SA, 'never deletes claims', 'delete persistentvolumeclaims @*'),
  ...q(CONTROLLER_SA, 'leases only in its namespace', 'create leases.coordination.k8s.io @default'),
];

suite('helm chart on a real control plane', () => {
  let cp: ControlPlane;
  let work: string;
  let metricsPort: number;
  const processes: HostProcess[] = [];

  beforeAll(async () => {
    cp = await ControlPlane.start();
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'tm-chart-'));
    await cp.k(['apply', '--server-side', '-f', serviceMonitorCrd()!]);
    await cp.k(['wait', '--for=condition=Established', '--timeout=60s', 'crd/servicemonitors.monitoring.coreos.com']);
    await cp.k(['create', 'namespace', NAMESPACE]);
  }, 80 * 60_000);

  afterAll(async () => {
    for (const p of processes) await p.stop();
    if (process.env.TIDEMARK_KEEP_LOGS) {
      for (const p of processes) fs.writeFileSync(path.join(process.env.TIDEMARK_KEEP_LOGS, `chart-${p.name}.log`), p.output);
    }
    if (cp) await cp.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  }, 180_000);

  /** Server-side dry run: the API server validates every object, CRD-backed ones included. */
  const dryRun = async (yaml: string) => {
    const result = await cp.kubectl(['apply', '--server-side', '--dry-run=server', '-f', '-'], yaml);
    expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' });
    return result.stdout.trim().split('\n');
  };

  it('accepts the chart with default values (kubectl apply --dry-run=server)', async () => {
    const applied = await dryRun(await helmTemplate());
    expect(applied).toHaveLength(18);
    expect(applied.every((line) => line.endsWith('serverside-applied (server dry run)'))).toBe(true);
  });

  it('accepts the chart with every optional part enabled', async () => {
    const applied = await dryRun(await helmTemplate(ALL_OPTIONAL));
    expect(applied).toHaveLength(32);
  });

  it('accepts manifests/ (kubectl kustomize | apply --dry-run=server)', async () => {
    const built = await cp.k(['kustomize', path.join(ROOT, 'manifests')]);
    expect(await dryRun(built)).toHaveLength(19);
  });

  it('installs with helm (every optional part) and prints what to do next', async () => {
    metricsPort = await freePort();
    const out = await must(
      HELM,
      [
        'install', RELEASE, CHART, '--namespace', NAMESPACE, '--kubeconfig', cp.kubeconfig,
        ...Object.entries({ ...ALL_OPTIONAL, 'node.metrics.host': '127.0.0.1', 'node.metrics.port': String(metricsPort) }).flatMap(([k, v]) => ['--set', `${k}=${v}`]),
      ],
      { timeoutMs: 300_000 },
    );
    expect(out).toContain('STATUS: deployed');
    expect(out).toContain(`rollout status daemonset/${RELEASE}-node`);
    expect(out).toContain(`deployment/${RELEASE}-snapshot-controller`);
    // The chart's own CRDs are there; the snapshot CRDs existed already and were left alone.
    await cp.k(['wait', '--for=condition=Established', '--timeout=60s', 'crd/recoverypoints.tidemark.dev', 'crd/volumerestores.tidemark.dev']);
  });

  it('grants every verb the components use, and refuses what they must not do (kubectl auth can-i)', async () => {
    const ask = async (question: Question) => {
      const [resource, subresource] = question.resource.split('/');
      const args = ['auth', 'can-i', question.verb, resource!, `--as=${question.who}`];
      if (subresource) args.push(`--subresource=${subresource}`);
      if (question.namespace === '*') args.push('--all-namespaces');
      else if (question.namespace) args.push('--namespace', question.namespace);
      const result = await cp.kubectl(args);
      return result.stdout.trim();
    };
    const rows: string[] = [];
    const wrong: string[] = [];
    for (const [expected, questions] of [['yes', ALLOWED], ['no', DENIED]] as const) {
      for (const question of questions) {
        const answer = await ask(question);
        const where = question.namespace === undefined ? '(cluster)' : question.namespace === '*' ? '(all namespaces)' : `-n ${question.namespace}`;
        const row = `${answer.padEnd(3)} ${question.who.split(':').pop()!.padEnd(30)} ${question.verb.padEnd(12)} ${question.resource} ${where}  [${question.why}]`;
        rows.push(row);
        if (answer !== expected) wrong.push(`expected ${expected}: ${row}`);
      }
    }
    console.log(`kubectl auth can-i (${ALLOWED.length} allowed, ${DENIED.length} refused):\n${rows.join('\n')}`);
    expect(wrong).toEqual([]);
  });

  describe('the DaemonSet containers as host processes', () => {
    let spec: PodSpec;
    let podName: string;
    let store: string;
    let metricsArgSupported = true;
    const byName: Record<string, HostProcess> = {};

    /** Each container's command: our image's entrypoint, or the sidecar built from Go. */
    const commandOf = (c: Container): string | undefined => {
      if (c.name === 'tidemark') return BIN;
      const binary = path.join(K8S_BIN, path.basename(c.image.split(':')[0]!));
      return fs.existsSync(binary) ? binary : undefined;
    };

    beforeAll(async () => {
      // The Node a kubelet would register (labels the DaemonSet and the snapshot-controller match).
      await cp.k(['apply', '-f', '-'], JSON.stringify({
        apiVersion: 'v1',
        kind: 'Node',
        metadata: { name: NODE, labels: { 'kubernetes.io/os': 'linux', 'kubernetes.io/hostname': NODE, 'topology.tidemark.dev/node': NODE } },
      }));
      // The DaemonSet controller makes the node's pod (nothing runs it): the csi-provisioner
      // finds the DaemonSet, the owner of its capacity objects, through that pod's name.
      await until('the DaemonSet pod for the node', async () => {
        const pods = await cp.getJson<{ items: { metadata: { name: string } }[] }>(['get', 'pods', '-n', NAMESPACE, '-l', 'app.kubernetes.io/component=node']);
        podName = pods?.items[0]?.metadata.name ?? '';
        return podName !== '';
      }, 60_000);
      const ds = (await cp.getJson<{ spec: { template: { spec: PodSpec } } }>(['get', 'daemonset', `${RELEASE}-node`, '-n', NAMESPACE]))!;
      spec = ds.spec.template.spec;
      await cp.k(['create', 'namespace', APP_NAMESPACE]);
    }, 120_000);

    it('starts every container exactly as rendered, with host paths and the ServiceAccount token', async () => {
      const kubeconfig = await cp.serviceAccountKubeconfig(NAMESPACE, spec.serviceAccountName, path.join(work, 'node-sa.kubeconfig'));
      // Host paths of the chart, moved under the work directory; /dev and /lib/modules stay.
      const moved: Record<string, string> = { '/var/lib/kubelet': path.join(work, 'kubelet'), '/var/lib/tidemark': path.join(work, 'store') };
      const hostPath = (p: string) => {
        for (const [from, to] of Object.entries(moved)) if (p === from || p.startsWith(`${from}/`)) return to + p.slice(from.length);
        return p;
      };
      store = hostPath('/var/lib/tidemark');
      const help = await run(BIN, ['serve', '--help']);
      metricsArgSupported = help.stdout.includes('--metrics-address');
      if (!metricsArgSupported) {
        if (process.env.CI === 'true') throw new Error('tidemark serve has no --metrics-address, which the chart passes; CI requires it');
        console.warn('SKIPPED in part: tidemark serve has no --metrics-address yet; started without it, /healthz not checked');
      }

      const fields: Record<string, string> = { 'spec.nodeName': NODE, 'metadata.namespace': NAMESPACE, 'metadata.name': podName };
      const started: string[] = [];
      const skipped: string[] = [];
      for (const c of spec.containers) {
        const command = commandOf(c);
        if (!command) {
          skipped.push(`${c.name} (${c.image}: no binary in ${K8S_BIN})`);
          continue;
        }
        const env: Record<string, string> = {};
        for (const e of c.env ?? []) env[e.name] = e.value ?? fields[e.valueFrom!.fieldRef!.fieldPath]!;
        // Container paths -> host paths through the container's own volume mounts.
        const mounts = (c.volumeMounts ?? [])
          .map((m) => [m.mountPath, hostPath(spec.volumes.find((v) => v.name === m.name)!.hostPath!.path)] as const)
          .sort((a, b) => b[0].length - a[0].length);
        const translate = (arg: string) => {
          let out = arg.replace(/\$\(([A-Z_]+)\)/g, (_, name: string) => env[name] ?? `$(${name})`);
          for (const [inside, outside] of mounts) {
            out = out.replace(new RegExp(`(^|=|//)${inside.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}(?=/|$)`), `$1${outside}`);
          }
          return out;
        };
        let args = (c.args ?? []).map(translate);
        if (!metricsArgSupported) args = args.filter((a) => !a.startsWith('--metrics-address'));
        args.push(`--kubeconfig=${kubeconfig}`);
        for (const [, outside] of mounts) if (outside.startsWith(work)) fs.mkdirSync(outside, { recursive: true });
        const p = new HostProcess(c.name, command, args, { ...process.env, ...env, TIDEMARK_STORE: '' }, c.name !== 'tidemark');
        processes.push(p);
        byName[c.name] = p;
        started.push(`${c.name}: ${path.basename(command)} ${args.join(' ')}`);
      }
      console.log(`started:\n  ${started.join('\n  ')}${skipped.length ? `\nnot started (no binary here):\n  ${skipped.join('\n  ')}` : ''}`);
      expect(Object.keys(byName)).toEqual(expect.arrayContaining(['tidemark', 'csi-provisioner', 'csi-snapshotter']));

      // The daemon first, then the sidecars (as the kubelet would, they retry until it answers).
      byName.tidemark!.start();
      await until('the daemon to be ready', async () => byName.tidemark!.output.includes('tidemark daemon ready'), 60_000, () => byName.tidemark!.output.slice(-3000));
      for (const p of processes) if (p !== byName.tidemark) p.start();
      const socket = path.join(work, 'kubelet', 'plugins', DRIVER, 'csi.sock');
      expect(fs.statSync(socket).isSocket()).toBe(true);
    }, 120_000);

    it('answers /healthz on the --metrics-address the liveness probe uses', async () => {
      if (!metricsArgSupported) return;
      const probe = spec.containers.find((c) => c.name === 'tidemark')!.livenessProbe!.httpGet!;
      await until('/healthz to answer 200', async () => (await fetch(`http://127.0.0.1:${metricsPort}${probe.path}`)).status === 200, 30_000);
      const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      expect(metrics).toMatch(/^# HELP /m);
    });

    it('provisions a claim through the rendered csi-provisioner, and publishes the node capacity', async () => {
      await cp.k(['apply', '-f', '-'], JSON.stringify({
        apiVersion: 'v1',
        kind: 'PersistentVolumeClaim',
        metadata: { name: 'data', namespace: APP_NAMESPACE, annotations: { 'volume.kubernetes.io/selected-node': NODE } },
        spec: { storageClassName: 'tidemark', accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '64Mi' } } },
      }));
      await until('claim data to be bound', async () => (await cp.getJson<{ status: { phase: string } }>(['get', 'pvc', 'data', '-n', APP_NAMESPACE]))?.status.phase === 'Bound', 90_000, () => byName['csi-provisioner']!.output.slice(-3000));
      type Capacities = { items: { storageClassName: string; nodeTopology: { matchLabels: Record<string, string> }; metadata: { ownerReferences?: { kind: string; name: string }[] } }[] };
      await until('a CSIStorageCapacity for the node', async () => {
        const list = await cp.getJson<Capacities>(['get', 'csistoragecapacities', '-n', NAMESPACE]);
        const mine = list?.items.find((c) => c.storageClassName === 'tidemark' && c.nodeTopology.matchLabels['topology.tidemark.dev/node'] === NODE);
        return !!mine && mine.metadata.ownerReferences?.[0]?.kind === 'DaemonSet' && mine.metadata.ownerReferences[0].name === `${RELEASE}-node`;
      }, 90_000, () => byName['csi-provisioner']!.output.slice(-3000));
    }, 200_000);

    it('takes a VolumeSnapshot through the rendered csi-snapshotter', async () => {
      await cp.k(['apply', '-f', '-'], JSON.stringify({
        apiVersion: 'snapshot.storage.k8s.io/v1',
        kind: 'VolumeSnapshot',
        metadata: { name: 'snap', namespace: APP_NAMESPACE },
        spec: { volumeSnapshotClassName: 'tidemark', source: { persistentVolumeClaimName: 'data' } },
      }));
      await until('VolumeSnapshot snap to be ready', async () => (await cp.getJson<{ status?: { readyToUse?: boolean } }>(['get', 'volumesnapshot', 'snap', '-n', APP_NAMESPACE]))?.status?.readyToUse === true, 90_000, () => byName['csi-snapshotter']!.output.slice(-3000));
    }, 120_000);

    it('records a RecoveryPoint and restores it into a new claim with the chart RBAC', async () => {
      await cp.k(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'tidemark.dev/v1alpha1', kind: 'RecoveryPoint', metadata: { name: 'point', namespace: APP_NAMESPACE }, spec: { claims: ['data'] } }));
      await until('RecoveryPoint point to be Recorded', async () => (await cp.getJson<{ status?: { phase?: string } }>(['get', 'recoverypoint', 'point', '-n', APP_NAMESPACE]))?.status?.phase === 'Recorded', 60_000, () => byName.tidemark!.output.slice(-3000));
      await cp.k(['apply', '-f', '-'], JSON.stringify({
        apiVersion: 'tidemark.dev/v1alpha1',
        kind: 'VolumeRestore',
        metadata: { name: 'copy', namespace: APP_NAMESPACE },
        spec: { claim: 'data', source: { recoveryPointName: 'point' }, newClaimName: 'data-copy' },
      }));
      await until('VolumeRestore copy to succeed', async () => (await cp.getJson<{ status?: { phase?: string } }>(['get', 'volumerestore', 'copy', '-n', APP_NAMESPACE]))?.status?.phase === 'Succeeded', 120_000, () => byName.tidemark!.output.slice(-4000));
      expect((await cp.getJson<{ status: { phase: string } }>(['get', 'pvc', 'data-copy', '-n', APP_NAMESPACE]))!.status.phase).toBe('Bound');
      expect(fs.readdirSync(path.join(store, 'volumes')).length).toBeGreaterThanOrEqual(2);
    }, 200_000);

    // Started above only when built, as every sidecar is.
    needing([built('csi-resizer')]).it('grows the claim through the rendered csi-resizer (its leader, on this node)', async () => {
      const resizer = byName['csi-resizer']!;
      await until('csi-resizer to take its leader lease', async () => /successfully acquired lease/i.test(resizer.output), 60_000, () => resizer.output.slice(-3000));
      await cp.k(['patch', 'pvc', 'data', '-n', APP_NAMESPACE, '--type', 'merge', '-p', '{"spec":{"resources":{"requests":{"storage":"128Mi"}}}}']);
      // The controller part: the engine volume and the PV grow; the filesystem part waits for a
      // kubelet (NodeExpandVolume at the next staging), which this control plane has none of.
      await until('the PersistentVolume to grow to 128Mi', async () => {
        const pvc = await cp.getJson<{ spec: { volumeName: string } }>(['get', 'pvc', 'data', '-n', APP_NAMESPACE]);
        const pv = await cp.getJson<{ spec: { capacity: { storage: string } } }>(['get', 'pv', pvc!.spec.volumeName]);
        return pv?.spec.capacity.storage === '128Mi';
      }, 90_000, () => resizer.output.slice(-3000));
    }, 120_000);

    it('was refused nothing: no "forbidden" in any container log', () => {
      for (const p of processes) {
        const denied = p.output.split('\n').filter((line) => /forbidden/i.test(line));
        expect({ container: p.name, denied: denied.slice(0, 5) }).toEqual({ container: p.name, denied: [] });
      }
    });

    it('runs the chart snapshot-controller with its own ServiceAccount: it takes the leader lease', async () => {
      const deployment = (await cp.getJson<{ spec: { template: { spec: PodSpec } } }>(['get', 'deployment', `${RELEASE}-snapshot-controller`, '-n', NAMESPACE]))!;
      const c = container(deployment.spec.template.spec, 'snapshot-controller');
      const kubeconfig = await cp.serviceAccountKubeconfig(NAMESPACE, deployment.spec.template.spec.serviceAccountName, path.join(work, 'controller-sa.kubeconfig'));
      const env: Record<string, string> = { NAMESPACE };
      const args = (c.args ?? []).map((a) => a.replace(/\$\(([A-Z_]+)\)/g, (_, name: string) => env[name] ?? '')).concat(`--kubeconfig=${kubeconfig}`);
      const p = new HostProcess('snapshot-controller', path.join(K8S_BIN, 'snapshot-controller'), args, { ...process.env, ...env }, false);
      processes.push(p);
      p.start();
      try {
        await until('the snapshot-controller to hold its lease', async () => /successfully acquired lease/i.test(p.output), 60_000, () => p.output.slice(-3000));
        // Let its informers list everything once.
        await new Promise((resolve) => setTimeout(resolve, 5000));
        expect(p.output.split('\n').filter((line) => /forbidden/i.test(line)).slice(0, 5)).toEqual([]);
      } finally {
        // Two snapshot controllers must not keep acting on the same objects.
        await p.stop();
      }
    }, 120_000);
  });
});
