/**
 * The user's scenario (issue 9) on a real single-node cluster: hack/local-cluster.sh up (the
 * control plane, kube-scheduler, a private containerd, a kubelet, and charts/tidemark installed
 * from locally built images), then everything through kubectl only, as a user would type it.
 *
 * It starts a whole cluster on the machine, so outside CI it runs only when asked
 * (TIDEMARK_LOCAL_CLUSTER=1); under CI=true it always runs and a missing prerequisite fails it
 * (test/support/requirements.ts). A cluster that was already up is reused and left up; one this
 * suite started is stopped with `down` at the end. Each run works in a namespace of its own.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { KUBECTL, ROOT, built, must, run } from '../chart/harness.js';
import { needing, root, tool, type Requirement } from '../support/requirements.js';

const SCRIPT = path.join(ROOT, 'hack', 'local-cluster.sh');
const STATE = process.env.TIDEMARK_LOCAL_DIR ?? '/tmp/tidemark-local';
const IMAGE = 'tidemark.local/busybox:1';

const askedFor: Requirement = {
  what: 'TIDEMARK_LOCAL_CLUSTER=1',
  present: () => process.env.TIDEMARK_LOCAL_CLUSTER === '1' || process.env.CI === 'true',
  install: 'set it to run this suite: it starts a whole Kubernetes node on this machine (hack/local-cluster.sh)',
};
const file = (what: string, where: string, install: string): Requirement => ({ what, present: () => fs.existsSync(where), install });

const gate = needing([
  askedFor,
  root('the kubelet and containerd run as root'),
  ...['kubelet', 'kube-scheduler', 'kubectl', 'helm', 'csi-provisioner', 'csi-snapshotter', 'csi-resizer'].map(built),
  tool('containerd'),
  tool('runc'),
  tool('iptables'),
  tool('go', 'install Go >= 1.25 (builds hack/registrar and hack/pause once)'),
  file('the CNI plugins', '/usr/lib/cni/bridge', 'apt-get install containernetworking-plugins'),
  file('busybox-static', '/bin/busybox', 'apt-get install busybox-static'),
]);

const ns = `tm-e2e-${process.pid}`;
let kubeconfig = '';
let startedHere = false;
const timings: string[] = [];

const kubectl = (args: string[], input?: string, timeoutMs = 180_000) =>
  must(KUBECTL, ['--kubeconfig', kubeconfig, '-n', ns, ...args], { input, timeoutMs });
const apply = (yaml: string) => kubectl(['apply', '-f', '-'], yaml);
const jsonpath = async (resource: string, expr: string) => (await kubectl(['get', resource, '-o', `jsonpath=${expr}`])).trim();

/** Polls until `check` gives a value (not undefined), or fails with what it saw last. */
async function until<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}
const phaseIs = (resource: string, phases: string[], timeoutMs = 120_000) =>
  until(`${resource} phase ${phases.join('|')}`, timeoutMs, async () => {
    const phase = await jsonpath(resource, '{.status.phase}');
    if (phase === 'Failed' && !phases.includes('Failed')) throw new Error(`${resource} Failed: ${await jsonpath(resource, '{.status.message}')}`);
    return phases.includes(phase) ? phase : undefined;
  });

async function timed<T>(step: string, body: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  const result = await body();
  timings.push(`${step}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return result;
}

const claim = (name: string, extra = '', mode = 'Filesystem') => `
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: ${name}}
spec:
  storageClassName: tidemark
  accessModes: [ReadWriteOnce]
  volumeMode: ${mode}
  resources: {requests: {storage: 64Mi}}
${extra}`;

/** A pod that runs `script` with the claim at /data; it ends quickly on TERM. */
const readerPod = (name: string, claimName: string, script: string) => `
apiVersion: v1
kind: Pod
metadata: {name: ${name}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: ${IMAGE}
    imagePullPolicy: Never
    command: [sh, -c, ${JSON.stringify(script)}]
    volumeMounts: [{name: d, mountPath: /data}]
  volumes: [{name: d, persistentVolumeClaim: {claimName: ${claimName}}}]
`;

const FILES = '/data/a /data/b';
const sums = (text: string) => text.trim().split('\n').map((line) => line.trim()).sort().join('\n');

gate.describe('the user scenario on a local cluster (hack/local-cluster.sh)', () => {
  let before = '';
  let appPod = '';
  let pointInTime = '';

  beforeAll(async () => {
    const status = await run('bash', [SCRIPT, 'status']);
    startedHere = !/^kubelet pid \d+/m.test(status.stdout);
    const t0 = Date.now();
    // A cold up builds the tidemark image and the small Go programs: minutes.
    kubeconfig = (await must('bash', [SCRIPT, 'up'], { timeoutMs: 20 * 60_000 })).trim().split('\n').pop() ?? '';
    timings.push(`up (${startedHere ? 'started here' : 'already running'}): ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    await must(KUBECTL, ['--kubeconfig', kubeconfig, 'create', 'namespace', ns]);
    await until('the default ServiceAccount', 30_000, async () => ((await run(KUBECTL, ['--kubeconfig', kubeconfig, '-n', ns, 'get', 'sa', 'default'])).code === 0 ? true : undefined));
  }, 25 * 60_000);

  afterAll(async () => {
    if (kubeconfig) {
      const events = await run(KUBECTL, ['--kubeconfig', kubeconfig, '-n', ns, 'get', 'events', '--sort-by', '.lastTimestamp']);
      if (events.code === 0) console.log(`events in ${ns}:\n${events.stdout.split('\n').slice(-40).join('\n')}`);
      await run(KUBECTL, ['--kubeconfig', kubeconfig, 'delete', 'namespace', ns, '--wait=true', '--timeout=120s'], { timeoutMs: 150_000 });
    }
    if (startedHere) await run('bash', [SCRIPT, 'down'], { timeoutMs: 300_000 });
    console.log(`timings:\n  ${timings.join('\n  ')}`);
  }, 10 * 60_000);

  it('the DaemonSet is ready, the driver registered through the kubelet, and the classes exist', async () => {
    const ready = await must(KUBECTL, ['--kubeconfig', kubeconfig, '-n', 'tidemark-system', 'get', 'daemonset', 'tidemark-node', '-o', 'jsonpath={.status.numberReady}/{.status.desiredNumberScheduled}']);
    expect(ready).toBe('1/1');
    const drivers = await must(KUBECTL, ['--kubeconfig', kubeconfig, 'get', 'csinode', '-o', 'jsonpath={.items[*].spec.drivers[*].name}']);
    expect(drivers).toContain('csi.tidemark.dev');
    await must(KUBECTL, ['--kubeconfig', kubeconfig, 'get', 'storageclass', 'tidemark']);
    await must(KUBECTL, ['--kubeconfig', kubeconfig, 'get', 'volumesnapshotclass', 'tidemark']);
  });

  it('1. a Deployment writes known data to a tidemark PVC', async () => {
    await timed('Deployment with a PVC Ready', async () => {
      await apply(claim('app-data'));
      await apply(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
spec:
  replicas: 1
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: c
        image: ${IMAGE}
        imagePullPolicy: Never
        command: [sh, -c, 'trap "exit 0" TERM; [ -f /data/a ] || { seq 1 200000 > /data/a; echo first > /data/b; sync; }; sleep 1000000 & wait']
        volumeMounts: [{name: d, mountPath: /data}]
      volumes: [{name: d, persistentVolumeClaim: {claimName: app-data}}]
`);
      await kubectl(['rollout', 'status', 'deployment/app', '--timeout=120s']);
    });
    appPod = await jsonpath('pods', '{.items[0].metadata.name}');
    before = sums(await kubectl(['exec', appPod, '--', 'md5sum', ...FILES.split(' ')]));
    expect(before.split('\n')).toHaveLength(2);
  }, 180_000);

  it('2. a VolumeSnapshot, a RecoveryPoint (Filesystem), then the data is damaged', async () => {
    await timed('VolumeSnapshot ready', async () => {
      await apply(`
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshot
metadata: {name: snap-1}
spec:
  volumeSnapshotClassName: tidemark
  source: {persistentVolumeClaimName: app-data}
`);
      await until('snap-1 readyToUse', 120_000, async () => ((await jsonpath('volumesnapshot/snap-1', '{.status.readyToUse}')) === 'true' ? true : undefined));
    });
    await timed('RecoveryPoint Recorded', async () => {
      await apply(`
apiVersion: tidemark.dev/v1alpha1
kind: RecoveryPoint
metadata: {name: rp-1}
spec: {claims: [app-data], consistency: Filesystem}
`);
      await phaseIs('recoverypoint/rp-1', ['Recorded']);
    });
    // A point in time between the RecoveryPoint and the damage, for step 4.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    pointInTime = new Date().toISOString();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await kubectl(['exec', appPod, '--', 'sh', '-c', 'echo damaged > /data/a; rm /data/b; echo new > /data/c; sync']);
    const after = await kubectl(['exec', appPod, '--', 'sh', '-c', 'ls /data; cat /data/a']);
    expect(after).toContain('damaged');
  }, 300_000);

  it('3. an in-place VolumeRestore waits for the pod, then restores exactly the RecoveryPoint', async () => {
    await apply(`
apiVersion: tidemark.dev/v1alpha1
kind: VolumeRestore
metadata: {name: undo}
spec: {claim: app-data, source: {recoveryPointName: rp-1}}
`);
    await phaseIs('volumerestore/undo', ['WaitingForDetach']);
    expect(await jsonpath('volumerestore/undo', '{.status.message}')).toContain(appPod);

    await timed('in-place restore after scale to 0', async () => {
      await kubectl(['scale', 'deployment/app', '--replicas=0']);
      await kubectl(['wait', '--for=delete', `pod/${appPod}`, '--timeout=120s']);
      await phaseIs('volumerestore/undo', ['Succeeded'], 180_000);
    });
    await kubectl(['scale', 'deployment/app', '--replicas=1']);
    await kubectl(['rollout', 'status', 'deployment/app', '--timeout=120s']);
    appPod = await jsonpath('pods', '{.items[0].metadata.name}');
    expect(sums(await kubectl(['exec', appPod, '--', 'md5sum', ...FILES.split(' ')]))).toBe(before);
    expect((await kubectl(['exec', appPod, '--', 'ls', '/data'])).split('\n')).not.toContain('c');
  }, 420_000);

  it('4. a VolumeRestore to a time, into a new claim, mounted by a second pod', async () => {
    await timed('restore to a time into a new claim, read by a pod', async () => {
      await apply(`
apiVersion: tidemark.dev/v1alpha1
kind: VolumeRestore
metadata: {name: to-time}
spec: {claim: app-data, source: {time: "${pointInTime}"}, newClaimName: at-time}
`);
      await phaseIs('volumerestore/to-time', ['Succeeded'], 180_000);
      expect(await jsonpath('volumerestore/to-time', '{.status.newClaimName}')).toBe('at-time');
      await apply(readerPod('read-time', 'at-time', `md5sum ${FILES}; ls /data`));
      await phaseIs('pod/read-time', ['Succeeded'], 180_000);
    });
    const lines = (await kubectl(['logs', 'read-time'])).trim().split('\n');
    expect(sums(lines.filter((line) => line.includes('/data/')).join('\n'))).toBe(before);
    expect(lines).not.toContain('c');
  }, 300_000);

  it('5. a PVC from the VolumeSnapshot, mounted by a pod, holds the snapshot data', async () => {
    await timed('PVC from a VolumeSnapshot, read by a pod', async () => {
      await apply(claim('from-snap', '  dataSource: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: snap-1}'));
      await apply(readerPod('read-snap', 'from-snap', `md5sum ${FILES}`));
      await phaseIs('pod/read-snap', ['Succeeded'], 180_000);
    });
    expect(sums(await kubectl(['logs', 'read-snap']))).toBe(before);
  }, 240_000);

  it('6. a block-mode PVC is used raw by a pod', async () => {
    await timed('block-mode PVC written and read raw', async () => {
      await apply(claim('raw', '', 'Block'));
      await apply(`
apiVersion: v1
kind: Pod
metadata: {name: raw-user}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: ${IMAGE}
    imagePullPolicy: Never
    command: [sh, -c, 'seq 1 100000 > /tmp/p; dd if=/tmp/p of=/dev/xvda bs=4096 conv=fsync 2>/dev/null; n=$(stat -c %s /tmp/p); dd if=/dev/xvda bs=1 count=$n 2>/dev/null | md5sum; md5sum < /tmp/p; blockdev --getsize64 /dev/xvda']
    volumeDevices: [{name: d, devicePath: /dev/xvda}]
  volumes: [{name: d, persistentVolumeClaim: {claimName: raw}}]
`);
      await phaseIs('pod/raw-user', ['Succeeded'], 180_000);
    });
    const [written, expected, size] = (await kubectl(['logs', 'raw-user'])).trim().split('\n');
    expect(written).toBe(expected);
    expect(Number(size)).toBe(64 * 1024 * 1024);
  }, 240_000);

  it('7. PVC expansion: a pod started after it sees the larger filesystem', async () => {
    const df = async (pod: string) => {
      await apply(readerPod(pod, 'grow', 'df -k /data | tail -n 1'));
      await phaseIs(`pod/${pod}`, ['Succeeded'], 180_000);
      return Number((await kubectl(['logs', pod])).trim().split(/\s+/)[1]);
    };
    await apply(claim('grow'));
    const small = await df('grow-1');
    await timed('PVC expansion 64Mi -> 128Mi, seen by the next pod', async () => {
      await kubectl(['patch', 'pvc', 'grow', '--type', 'merge', '-p', '{"spec":{"resources":{"requests":{"storage":"128Mi"}}}}']);
      const pv = await jsonpath('pvc/grow', '{.spec.volumeName}');
      await until('the PV to grow', 120_000, async () =>
        (await must(KUBECTL, ['--kubeconfig', kubeconfig, 'get', 'pv', pv, '-o', 'jsonpath={.spec.capacity.storage}'])).trim() === '128Mi' ? true : undefined,
      );
      const large = await df('grow-2');
      expect(large).toBeGreaterThan(small * 1.5);
      await until('the PVC to report 128Mi', 120_000, async () => ((await jsonpath('pvc/grow', '{.status.capacity.storage}')) === '128Mi' ? true : undefined));
    });
  }, 420_000);

  it('9. kubectl get rp,vrs, the Events and the metrics scraped from the tidemark pod', async () => {
    const listing = await kubectl(['get', 'rp,vrs']);
    expect(listing).toMatch(/rp-1\s.*Recorded/);
    expect(listing).toMatch(/undo\s.*Succeeded/);
    const events = await kubectl(['get', 'events', '--field-selector', 'involvedObject.name=undo', '-o', 'jsonpath={.items[*].reason}']);
    expect(events.length).toBeGreaterThan(0);

    const pod = (await must(KUBECTL, ['--kubeconfig', kubeconfig, '-n', 'tidemark-system', 'get', 'pods', '-l', 'app.kubernetes.io/component=node', '-o', 'jsonpath={.items[0].metadata.name}'])).trim();
    const port = (await must(KUBECTL, ['--kubeconfig', kubeconfig, '-n', 'tidemark-system', 'get', 'pod', pod, '-o', 'jsonpath={.spec.containers[?(@.name=="tidemark")].ports[?(@.name=="metrics")].containerPort}'])).trim();
    const metrics = await must(KUBECTL, ['--kubeconfig', kubeconfig, 'get', '--raw', `/api/v1/namespaces/tidemark-system/pods/${pod}:${port}/proxy/metrics`]);
    expect(metrics).toMatch(/^tidemark_volume_written_bytes_total\{/m);
    expect(metrics).toMatch(/^tidemark_restore_duration_seconds_count\{method="[a-z-]+"\} [1-9]/m);
    expect(metrics).toMatch(/^tidemark_reconcile_total\{kind="recoverypoints",result="success"\} [1-9]/m);
    expect(metrics).toMatch(/^tidemark_reconcile_total\{kind="volumerestores",result="success"\} [1-9]/m);
  }, 120_000);

  // Last: it drops the NBD connections of every attached volume (the restart-survival issue is
  // what makes this survivable); the test records what the app saw and requires only that the
  // driver comes back and serves new claims.
  it('8. the tidemark pod deleted while an app pod writes: recorded; the DaemonSet recreates it', async () => {
    await apply(claim('busy'));
    await apply(readerPod('writer', 'busy', 'trap "exit 0" TERM; i=0; while :; do i=$((i+1)); if echo $i >> /data/log && sync /data/log; then :; else echo "write $i failed at $(date +%T)"; fi; sleep 0.2; done'));
    await phaseIs('pod/writer', ['Running']);
    await until('the writer to write', 30_000, async () => (Number((await kubectl(['exec', 'writer', '--', 'sh', '-c', 'wc -l < /data/log'])).trim()) > 5 ? true : undefined));
    const sys = (args: string[]) => must(KUBECTL, ['--kubeconfig', kubeconfig, '-n', 'tidemark-system', ...args], { timeoutMs: 300_000 });
    const old = (await sys(['get', 'pods', '-l', 'app.kubernetes.io/component=node', '-o', 'jsonpath={.items[0].metadata.name}'])).trim();
    const linesBefore = Number((await kubectl(['exec', 'writer', '--', 'sh', '-c', 'wc -l < /data/log'])).trim());
    await timed('tidemark pod deleted and recreated, Ready', async () => {
      await sys(['delete', 'pod', old, '--wait=true', '--timeout=120s']);
      await until('a new tidemark pod', 60_000, async () => {
        const name = (await sys(['get', 'pods', '-l', 'app.kubernetes.io/component=node', '-o', 'jsonpath={.items[0].metadata.name}'])).trim();
        return name && name !== old ? name : undefined;
      });
      await sys(['rollout', 'status', 'daemonset/tidemark-node', '--timeout=240s']);
    });
    await new Promise((resolve) => setTimeout(resolve, 5000));
    const probe = await run(KUBECTL, ['--kubeconfig', kubeconfig, '-n', ns, 'exec', 'writer', '--', 'sh', '-c', 'wc -l < /data/log; tail -n 1 /data/log'], { timeoutMs: 30_000 });
    const logs = await run(KUBECTL, ['--kubeconfig', kubeconfig, '-n', ns, 'logs', 'writer', '--tail', '5'], { timeoutMs: 30_000 });
    console.log(
      `app I/O across the tidemark pod's restart: ${linesBefore} lines before; after: exec exit ${probe.code}: ${(probe.stdout + probe.stderr).trim().replace(/\n/g, ' | ')}; ` +
        `the writer's own log: ${logs.stdout.trim().replace(/\n/g, ' | ') || '(nothing: every write succeeded)'}; phase ${await jsonpath('pod/writer', '{.status.phase}')}`,
    );
    // The driver is back: a new claim is provisioned and mounted.
    await apply(claim('after-restart'));
    await apply(readerPod('after-restart', 'after-restart', 'echo ok > /data/x && cat /data/x'));
    await phaseIs('pod/after-restart', ['Succeeded'], 180_000);
    expect((await kubectl(['logs', 'after-restart'])).trim()).toBe('ok');
  }, 600_000);

  it('10. helm uninstall: claims and data stay; after deleting them nothing is left on the node', async () => {
    const store = path.join(STATE, 'store', 'volumes');
    await kubectl(['scale', 'deployment/app', '--replicas=0']);
    await kubectl(['delete', 'pods', '--all', '--wait=true', '--timeout=120s']);
    const claims = (await jsonpath('pvc', '{.items[*].metadata.name}')).split(' ');
    const volumes = (await jsonpath('pvc', '{.items[*].spec.volumeName}')).split(' ').filter(Boolean);
    expect(volumes.length).toBe(claims.length);

    await timed('helm uninstall, claims kept, reinstalled', async () => {
      await must(path.join(path.dirname(KUBECTL), 'helm'), ['uninstall', 'tidemark', '--kubeconfig', kubeconfig, '-n', 'tidemark-system', '--wait', '--timeout', '120s'], { timeoutMs: 150_000 });
      expect((await jsonpath('pvc', '{.items[*].status.phase}')).split(' ').every((phase) => phase === 'Bound')).toBe(true);
      for (const volume of volumes) expect(fs.existsSync(path.join(store, volume))).toBe(true);
      await must('bash', [SCRIPT, 'up'], { timeoutMs: 20 * 60_000 });
    });
    // The data written in step 1 and restored in step 3 is still there.
    await kubectl(['scale', 'deployment/app', '--replicas=1']);
    await kubectl(['rollout', 'status', 'deployment/app', '--timeout=120s']);
    appPod = await jsonpath('pods', '{.items[0].metadata.name}');
    expect(sums(await kubectl(['exec', appPod, '--', 'md5sum', ...FILES.split(' ')]))).toBe(before);

    await timed('claims, snapshots and workloads deleted, volumes gone from the node', async () => {
      await kubectl(['delete', 'deployment', '--all', '--wait=true', '--timeout=120s']);
      await kubectl(['delete', 'pods', '--all', '--wait=true', '--timeout=120s']);
      await kubectl(['delete', 'volumerestores,recoverypoints,volumesnapshots', '--all', '--wait=true', '--timeout=120s']);
      await kubectl(['delete', 'pvc', '--all', '--wait=true', '--timeout=120s']);
      await until('the PersistentVolumes to go', 120_000, async () => {
        const left = (await must(KUBECTL, ['--kubeconfig', kubeconfig, 'get', 'pv', '-o', 'jsonpath={.items[*].metadata.name}'])).split(' ');
        return volumes.some((volume) => left.includes(volume)) ? undefined : true;
      });
      await until('the volumes to leave the store', 60_000, async () => (volumes.some((volume) => fs.existsSync(path.join(store, volume))) ? undefined : true));
    });
    const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8');
    for (const volume of volumes) expect(mounts).not.toContain(volume);
  }, 900_000);
});
