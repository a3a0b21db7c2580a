import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AdminClient } from '../../src/api/client.js';
import { readMounts } from '../../src/host/mounts.js';
import { PACKAGE_ROOT } from '../../src/util/package.js';
import { BIN } from '../cli/harness.js';
import { HostProcess, run, until, type Result } from '../support/processes.js';
import { CACHE, haveTool, root, type Requirement } from '../support/requirements.js';

export { until };

/**
 * A real control plane for the reconciler tests: etcd, kube-apiserver, kube-controller-manager
 * and snapshot-controller started on loopback by hack/control-plane.sh (built from the Go
 * module proxy by hack/build-k8s.sh), plus, as host processes, one node's `tidemark serve`
 * with csi-provisioner and csi-snapshotter in --node-deployment mode, as the chart runs them.
 *
 * There is no kubelet. The Node and CSINode objects a kubelet would register are created
 * here by hand, a PVC gets the selected-node annotation the scheduler would give it, and
 * Pod objects bound to the node stand for pods using a claim (nothing runs them).
 */

export const NODE = 'tm-node-1';
export const NAMESPACE = 'tidemark-e2e';
export const STORAGE_CLASS = 'tidemark';
export const SNAPSHOT_CLASS = 'tidemark';

export const K8S_BIN = path.join(CACHE, 'k8s', 'bin');

/** What the control plane needs here (test/support/requirements.ts decides and says). */
export const PREREQUISITES: Requirement[] = [
  root('the reconciler tests stage volumes (nbdfuse, loop devices, mounts)'),
  {
    what: 'the Kubernetes binaries, or Go to build them',
    present: () => ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kubectl', 'csi-provisioner', 'csi-snapshotter', 'snapshot-controller'].every((b) => fs.existsSync(path.join(K8S_BIN, b))) || haveTool('go'),
    install: 'hack/build-k8s.sh; install Go >= 1.25',
  },
];

export class Cluster {
  readonly kubeconfig: string;
  readonly store: string;
  readonly admin: AdminClient;
  private daemon: HostProcess | undefined;
  private readonly sidecars: HostProcess[] = [];

  private constructor(
    readonly dir: string,
    kubeconfig: string,
  ) {
    this.kubeconfig = kubeconfig;
    this.store = path.join(dir, 'store');
    this.admin = new AdminClient(path.join(this.store, 'admin.sock'));
  }

  get csiSocket(): string {
    return path.join(this.store, 'csi.sock');
  }

  /** Starts the control plane and registers one node with the driver, as a kubelet would. */
  static async start(): Promise<Cluster> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tidemark-k8s-'));
    const cpDir = path.join(dir, 'control-plane');
    const up = await run('bash', [path.join(PACKAGE_ROOT, 'hack', 'control-plane.sh'), 'up', '--dir', cpDir], { timeoutMs: 80 * 60_000 });
    if (up.code !== 0) throw new Error(`hack/control-plane.sh up failed (exit ${up.code}):\n${up.stderr.slice(-4000)}`);
    const cluster = new Cluster(dir, path.join(cpDir, 'admin.kubeconfig'));
    await cluster.registerNode();
    return cluster;
  }

  async kubectl(args: string[], input?: string): Promise<Result> {
    return run(path.join(K8S_BIN, 'kubectl'), ['--kubeconfig', this.kubeconfig, ...args], input !== undefined ? { input } : {});
  }

  /** kubectl that must succeed; its stdout. */
  async k(args: string[], input?: string): Promise<string> {
    const result = await this.kubectl(args, input);
    if (result.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed (exit ${result.code}): ${result.stderr}`);
    return result.stdout;
  }

  async apply(manifest: object | string): Promise<string> {
    return this.k(['apply', '-f', '-'], typeof manifest === 'string' ? manifest : JSON.stringify(manifest));
  }

  async getJson<T = Record<string, unknown>>(kind: string, name: string, namespace = NAMESPACE): Promise<T | undefined> {
    const result = await this.kubectl(['get', kind, name, '-n', namespace, '-o', 'json']);
    if (result.code !== 0) {
      if (/NotFound/.test(result.stderr)) return undefined;
      throw new Error(`kubectl get ${kind} ${name}: ${result.stderr}`);
    }
    return JSON.parse(result.stdout) as T;
  }

  private async registerNode(): Promise<void> {
    for (const file of fs.readdirSync(path.join(PACKAGE_ROOT, 'charts', 'tidemark', 'crds'))) {
      await this.k(['apply', '-f', path.join(PACKAGE_ROOT, 'charts', 'tidemark', 'crds', file)]);
    }
    await this.k(['wait', '--for=condition=Established', '--timeout=60s', 'crd/recoverypoints.tidemark.dev', 'crd/volumerestores.tidemark.dev']);
    await this.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NAMESPACE } });
    await this.apply({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: NODE, labels: { 'kubernetes.io/hostname': NODE, 'topology.tidemark.dev/node': NODE } },
    });
    await this.apply({
      apiVersion: 'storage.k8s.io/v1',
      kind: 'CSINode',
      metadata: { name: NODE },
      spec: { drivers: [{ name: 'csi.tidemark.dev', nodeID: NODE, topologyKeys: ['topology.tidemark.dev/node'] }] },
    });
    await this.apply({
      apiVersion: 'storage.k8s.io/v1',
      kind: 'StorageClass',
      metadata: { name: STORAGE_CLASS },
      provisioner: 'csi.tidemark.dev',
      volumeBindingMode: 'WaitForFirstConsumer',
      allowVolumeExpansion: true,
      reclaimPolicy: 'Delete',
      parameters: { 'csi.storage.k8s.io/fstype': 'ext4' },
    });
    await this.apply({ apiVersion: 'snapshot.storage.k8s.io/v1', kind: 'VolumeSnapshotClass', metadata: { name: SNAPSHOT_CLASS }, driver: 'csi.tidemark.dev', deletionPolicy: 'Delete' });
  }

  /** Starts (or restarts) the node's daemon and, on first start, its sidecars. */
  async startNode(extraArgs: string[] = []): Promise<void> {
    fs.mkdirSync(this.store, { recursive: true, mode: 0o700 });
    const daemon = new HostProcess(
      'tidemark',
      BIN,
      ['serve', '--store', this.store, '--node-id', NODE, '--kubeconfig', this.kubeconfig, '--reconcilers', 'on', '--resync-interval', '2', '--log-level', 'debug', ...extraArgs],
      { ...process.env, TIDEMARK_STORE: '' },
      false,
    );
    const previous = this.daemon?.output ?? '';
    this.daemon = daemon;
    daemon.output = previous;
    const before = previous.length;
    daemon.start();
    await until('the daemon is ready', async () => daemon.output.slice(before).includes('"message":"tidemark daemon ready"'), 30_000, () => daemon.output.slice(-3000));
    if (this.sidecars.length === 0) this.startSidecars();
  }

  private startSidecars(): void {
    const env = { ...process.env, NODE_NAME: NODE };
    const common = [`--csi-address=${this.csiSocket}`, `--kubeconfig=${this.kubeconfig}`, '--v=4'];
    const provisioner = new HostProcess(
      'csi-provisioner',
      path.join(K8S_BIN, 'csi-provisioner'),
      [...common, '--node-deployment=true', '--strict-topology=true', '--immediate-topology=false', '--extra-create-metadata=true', '--leader-election=false', '--timeout=60s'],
      env,
      true,
    );
    const snapshotter = new HostProcess(
      'csi-snapshotter',
      path.join(K8S_BIN, 'csi-snapshotter'),
      [...common, '--node-deployment=true', '--extra-create-metadata=true', '--leader-election=false', '--timeout=60s'],
      env,
      true,
    );
    this.sidecars.push(provisioner, snapshotter);
    for (const sidecar of this.sidecars) sidecar.start();
  }

  get daemonLogs(): string {
    return this.daemon?.output ?? '';
  }

  sidecarLogs(name: string): string {
    return this.sidecars.find((s) => s.name === name)?.output ?? '';
  }

  /** Kills kube-apiserver and starts it again through the script (whose `up` restarts what is down). */
  async restartApiServer(): Promise<void> {
    const cpDir = path.join(this.dir, 'control-plane');
    const pid = Number(fs.readFileSync(path.join(cpDir, 'pids', 'kube-apiserver.pid'), 'utf8').trim());
    process.kill(pid, 'SIGKILL');
    await until('kube-apiserver to exit', async () => !fs.existsSync(`/proc/${pid}`), 30_000);
    // Long enough for every watch to break and for the reconcilers to retry against nothing.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const up = await run('bash', [path.join(PACKAGE_ROOT, 'hack', 'control-plane.sh'), 'up', '--dir', cpDir], { timeoutMs: 300_000 });
    if (up.code !== 0) throw new Error(`hack/control-plane.sh up (restart) failed: ${up.stderr.slice(-3000)}`);
  }

  async killDaemon(): Promise<void> {
    await this.daemon?.kill('SIGKILL');
  }

  async stop(): Promise<void> {
    this.admin.close();
    for (const sidecar of this.sidecars) await sidecar.stop();
    await this.daemon?.stop();
    await run('bash', [path.join(PACKAGE_ROOT, 'hack', 'control-plane.sh'), 'down', '--dir', path.join(this.dir, 'control-plane')], { timeoutMs: 120_000 });
    // The store holds a few hundred MiB of volumes; every run used to leave it in the temp
    // directory. A mount still under it (an attachment the daemon kept) keeps it, since
    // removing through a mount would delete that filesystem's files.
    const inside = (await readMounts()).filter((m) => m.mountPoint === this.dir || m.mountPoint.startsWith(`${this.dir}/`));
    if (inside.length === 0) fs.rmSync(this.dir, { recursive: true, force: true });
    else console.warn(`kept ${this.dir}: still mounted under it: ${inside.map((m) => m.mountPoint).join(', ')}`);
  }

  /** A PVC on the node, bound and provisioned: returns the engine volume name. */
  async provisionClaim(name: string, size: string, options: { volumeMode?: 'Filesystem' | 'Block' } = {}): Promise<{ volume: string; handle: string }> {
    await this.apply({
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: { name, namespace: NAMESPACE, annotations: { 'volume.kubernetes.io/selected-node': NODE } },
      spec: { storageClassName: STORAGE_CLASS, accessModes: ['ReadWriteOnce'], volumeMode: options.volumeMode ?? 'Filesystem', resources: { requests: { storage: size } } },
    });
    return this.boundVolume(name);
  }

  /** Waits until a claim is bound, and returns its engine volume name and handle. */
  async boundVolume(claim: string, timeoutMs = 90_000): Promise<{ volume: string; handle: string }> {
    let handle = '';
    await until(
      `claim ${claim} to be bound`,
      async () => {
        const pvc = await this.getJson<{ spec: { volumeName?: string }; status?: { phase?: string } }>('pvc', claim);
        if (pvc?.status?.phase !== 'Bound' || !pvc.spec.volumeName) return false;
        const pv = JSON.parse(await this.k(['get', 'pv', pvc.spec.volumeName, '-o', 'json'])) as { spec: { csi: { volumeHandle: string } } };
        handle = pv.spec.csi.volumeHandle;
        return true;
      },
      timeoutMs,
      () => `${this.sidecarLogs('csi-provisioner').slice(-3000)}`,
    );
    return { volume: handle.split(':')[1]!, handle };
  }

  /** Waits for a custom resource's status.phase to be one of `phases`, and returns the object. */
  async waitPhase<T extends { status?: { phase?: string; message?: string } }>(kind: string, name: string, phases: string[], timeoutMs = 60_000): Promise<T> {
    let last: T | undefined;
    await until(
      `${kind} ${name} to reach ${phases.join(' or ')}`,
      async () => {
        last = await this.getJson<T>(kind, name);
        return phases.includes(last?.status?.phase ?? '');
      },
      timeoutMs,
      () => `last status: ${JSON.stringify(last?.status)}\n${this.daemonLogs.slice(-4000)}`,
    );
    return last!;
  }

  /** Events recorded on one object, oldest first, as "Type Reason: message". */
  async eventsOf(name: string): Promise<string[]> {
    const list = JSON.parse(await this.k(['get', 'events', '-n', NAMESPACE, '--field-selector', `involvedObject.name=${name}`, '-o', 'json'])) as {
      items: { type: string; reason: string; message: string; metadata: { creationTimestamp: string } }[];
    };
    return list.items.sort((a, b) => a.metadata.creationTimestamp.localeCompare(b.metadata.creationTimestamp)).map((e) => `${e.type} ${e.reason}: ${e.message}`);
  }
}
