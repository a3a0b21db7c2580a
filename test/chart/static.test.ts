import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  ALL_OPTIONAL,
  CHART,
  DRIVER,
  HELM,
  RELEASE,
  ROOT,
  built,
  byKind,
  container,
  flag,
  helm,
  helmTemplate,
  named,
  onPath,
  parseAll,
  podSpec,
  run,
  suiteNeeding,
  type K8sObject,
  type PodSpec,
} from './harness.js';

/**
 * The chart, the plain manifests, the image definition and the shell scripts, checked without
 * a cluster: helm lint, the schema, the rendered objects and how the DaemonSet's containers
 * are wired together, the manifests/ sync check, Dockerfile against hack/image.list, and
 * bash -n + shellcheck on the scripts.
 */

const objectList = (objects: K8sObject[]) => objects.map((o) => `${o.kind}/${o.metadata.name}`).sort();

interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}
const rulesOf = (role: K8sObject) => ((role as unknown as { rules?: Rule[] }).rules ?? []) as Rule[];

const DEFAULT_OBJECTS = [
  'CSIDriver/csi.tidemark.dev',
  'ClusterRole/tidemark-provisioner',
  'ClusterRole/tidemark-reconciler',
  'ClusterRole/tidemark-resizer',
  'ClusterRole/tidemark-snapshotter',
  'ClusterRoleBinding/tidemark-provisioner',
  'ClusterRoleBinding/tidemark-reconciler',
  'ClusterRoleBinding/tidemark-resizer',
  'ClusterRoleBinding/tidemark-snapshotter',
  'CustomResourceDefinition/recoverypoints.tidemark.dev',
  'CustomResourceDefinition/volumerestores.tidemark.dev',
  'DaemonSet/tidemark-node',
  'Role/tidemark-node',
  'RoleBinding/tidemark-node',
  'ServiceAccount/tidemark-node',
  'StorageClass/tidemark',
  'VolumeGroupSnapshotClass/tidemark',
  'VolumeSnapshotClass/tidemark',
];
const OPTIONAL_OBJECTS = [
  'ClusterRole/tidemark-snapshot-controller',
  'ClusterRoleBinding/tidemark-snapshot-controller',
  'CustomResourceDefinition/volumegroupsnapshotclasses.groupsnapshot.storage.k8s.io',
  'CustomResourceDefinition/volumegroupsnapshotcontents.groupsnapshot.storage.k8s.io',
  'CustomResourceDefinition/volumegroupsnapshots.groupsnapshot.storage.k8s.io',
  'CustomResourceDefinition/volumesnapshotclasses.snapshot.storage.k8s.io',
  'CustomResourceDefinition/volumesnapshotcontents.snapshot.storage.k8s.io',
  'CustomResourceDefinition/volumesnapshots.snapshot.storage.k8s.io',
  'Deployment/tidemark-snapshot-controller',
  'Role/tidemark-snapshot-controller',
  'RoleBinding/tidemark-snapshot-controller',
  'Service/tidemark-metrics',
  'ServiceAccount/tidemark-snapshot-controller',
  'ServiceMonitor/tidemark',
];

suiteNeeding([built('helm')])('helm chart (no cluster)', () => {
  let defaults: K8sObject[];
  let everything: K8sObject[];
  let node: PodSpec;

  beforeAll(async () => {
    defaults = parseAll(await helmTemplate());
    everything = parseAll(await helmTemplate(ALL_OPTIONAL));
    node = podSpec(named(defaults, 'DaemonSet', 'tidemark-node'));
  });

  it('passes helm lint --strict with default values and with every optional part', async () => {
    for (const values of [{}, ALL_OPTIONAL]) {
      const args = ['lint', '--strict', CHART, ...Object.entries(values).flatMap(([k, v]) => ['--set', `${k}=${v}`])];
      const result = await helm(args);
      expect({ code: result.code, output: result.stdout + result.stderr }).toEqual({ code: 0, output: expect.stringContaining('0 chart(s) failed') });
      expect(result.stdout).not.toMatch(/\[(WARNING|ERROR)\]/);
    }
  });

  it('renders the expected objects, with defaults and with every optional part', () => {
    console.log(`rendered with default values:\n  ${objectList(defaults).join('\n  ')}`);
    expect(objectList(defaults)).toEqual(DEFAULT_OBJECTS);
    expect(objectList(everything)).toEqual([...DEFAULT_OBJECTS, ...OPTIONAL_OBJECTS].sort());
  });

  it('rejects values that values.schema.json does not allow', async () => {
    const cases: [string, RegExp][] = [
      ['storageClass.fsType=btrfs', /fsType/],
      ['node.attach=nbd', /attach/],
      ['node.atach=fuse', /atach/],
      ['storageClass.retentionSize=lots', /retentionSize/],
      ['image.tidemark.pullPolicy=Sometimes', /pullPolicy/],
      ['node.metrics.port=70000', /port/],
    ];
    for (const [set, message] of cases) {
      const result = await helm(['template', RELEASE, CHART, '--set', set]);
      expect({ set, code: result.code }).toEqual({ set, code: 1 });
      expect(result.stderr).toMatch(message);
    }
    const ok = await helm(['template', RELEASE, CHART, '--set', 'storageClass.retentionAge=1h30m', '--set', 'storageClass.retentionSize=10Gi', '--set', 'storageClass.trackingGranularity=64Ki']);
    expect(ok.stderr).toBe('');
  });

  it('names every ClusterRole and binding after the release, so releases never collide', async () => {
    for (const release of ['tidemark', 'acme', 'tidemark-prod']) {
      const objects = parseAll(await helmTemplate(ALL_OPTIONAL, { release }));
      const clusterWide = [...byKind(objects, 'ClusterRole'), ...byKind(objects, 'ClusterRoleBinding')];
      expect(clusterWide.length).toBeGreaterThan(0);
      for (const o of clusterWide) expect(o.metadata.name.startsWith(`${release}-`)).toBe(true);
    }
  });

  it('grants no wildcard and no secrets, and binds only roles and ServiceAccounts it renders', () => {
    const roles = [...byKind(everything, 'ClusterRole'), ...byKind(everything, 'Role')];
    for (const role of roles) {
      for (const rule of rulesOf(role)) {
        expect([...rule.verbs, ...rule.resources, ...rule.apiGroups]).not.toContain('*');
        expect(rule.resources).not.toContain('secrets');
      }
    }
    const accounts = new Set(byKind(everything, 'ServiceAccount').map((sa) => sa.metadata.name));
    for (const binding of [...byKind(everything, 'ClusterRoleBinding'), ...byKind(everything, 'RoleBinding')]) {
      const b = binding as unknown as { roleRef: { kind: string; name: string }; subjects: { kind: string; name: string; namespace: string }[] };
      named(everything, b.roleRef.kind, b.roleRef.name);
      for (const subject of b.subjects) {
        expect(subject.kind).toBe('ServiceAccount');
        expect(accounts.has(subject.name)).toBe(true);
      }
    }
    // One ServiceAccount per workload.
    expect(podSpec(named(everything, 'DaemonSet', 'tidemark-node')).serviceAccountName).toBe('tidemark-node');
    expect(podSpec(named(everything, 'Deployment', 'tidemark-snapshot-controller')).serviceAccountName).toBe('tidemark-snapshot-controller');
  });

  it('wires the DaemonSet: one CSI socket for the daemon, the sidecars and the kubelet', () => {
    const daemon = container(node, 'tidemark');
    const volume = (name: string) => node.volumes.find((v) => v.name === name)!.hostPath!.path;
    const mount = (c: typeof daemon, name: string) => c.volumeMounts!.find((m) => m.name === name)!;

    // The daemon: node id from the node name, store on its hostPath, socket in the plugin dir.
    expect(daemon.args![0]).toBe('serve');
    expect(flag(daemon, '--node-id')).toBe('$(NODE_NAME)');
    expect(daemon.env).toContainEqual({ name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } });
    expect(flag(daemon, '--store')).toBe('/var/lib/tidemark');
    expect(volume('store')).toBe('/var/lib/tidemark');
    expect(mount(daemon, 'store').mountPath).toBe('/var/lib/tidemark');
    const pluginDir = volume('plugin-dir');
    expect(pluginDir).toBe(`/var/lib/kubelet/plugins/${DRIVER}`);
    expect(flag(daemon, '--csi-endpoint')).toBe(`unix://${pluginDir}/csi.sock`);
    // The kubelet directory (which holds the plugin dir) is mounted at its own path, shared both ways.
    expect(mount(daemon, 'kubelet-dir')).toEqual({ name: 'kubelet-dir', mountPath: '/var/lib/kubelet', mountPropagation: 'Bidirectional' });
    expect(volume('kubelet-dir')).toBe('/var/lib/kubelet');
    expect(daemon.securityContext).toEqual({ privileged: true, runAsUser: 0 });
    expect(mount(daemon, 'dev').mountPath).toBe('/dev');
    expect(volume('dev')).toBe('/dev');

    // Liveness on the daemon's own /healthz, the port of --metrics-address.
    const port = daemon.ports!.find((p) => p.name === 'metrics')!.containerPort;
    expect(flag(daemon, '--metrics-address')).toBe(`0.0.0.0:${port}`);
    expect(daemon.livenessProbe!.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
    expect(daemon.startupProbe!.httpGet).toEqual({ path: '/healthz', port: 'metrics' });

    // Every sidecar reaches the same socket: plugin-dir mounted at /csi.
    for (const name of ['csi-provisioner', 'csi-snapshotter', 'csi-resizer', 'node-driver-registrar']) {
      const c = container(node, name);
      expect(flag(c, '--csi-address')).toBe('/csi/csi.sock');
      expect(mount(c, 'plugin-dir').mountPath).toBe('/csi');
    }
    const registrar = container(node, 'node-driver-registrar');
    expect(flag(registrar, '--kubelet-registration-path')).toBe(`${pluginDir}/csi.sock`);
    expect(volume('registration-dir')).toBe('/var/lib/kubelet/plugins_registry');
    expect(mount(registrar, 'registration-dir').mountPath).toBe('/registration');
    expect(registrar.livenessProbe!.httpGet).toEqual({ path: '/healthz', port: 'registrar' });
  });

  it('runs the sidecars per node with the flags a node-local driver needs', () => {
    const provisioner = container(node, 'csi-provisioner');
    expect(flag(provisioner, '--node-deployment')).toBe('true');
    expect(flag(provisioner, '--strict-topology')).toBe('true');
    expect(flag(provisioner, '--immediate-topology')).toBe('false');
    expect(flag(provisioner, '--enable-capacity')).toBe('true');
    expect(flag(provisioner, '--capacity-ownerref-level')).toBe('1');
    expect(flag(provisioner, '--leader-election')).toBe('false');
    expect((provisioner.env ?? []).map((e) => [e.name, e.valueFrom?.fieldRef?.fieldPath])).toEqual([
      ['NODE_NAME', 'spec.nodeName'],
      ['NAMESPACE', 'metadata.namespace'],
      ['POD_NAME', 'metadata.name'],
    ]);
    const snapshotter = container(node, 'csi-snapshotter');
    expect(flag(snapshotter, '--node-deployment')).toBe('true');
    expect(flag(snapshotter, '--extra-create-metadata')).toBe('true');
    expect(flag(snapshotter, '--leader-election')).toBe('false');
    expect(snapshotter.env).toContainEqual({ name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } });
    // The resizer has no per-node mode: one leader acts for the cluster.
    expect(flag(container(node, 'csi-resizer'), '--leader-election')).toBe('true');

    const controller = podSpec(named(everything, 'Deployment', 'tidemark-snapshot-controller'));
    expect(flag(container(controller, 'snapshot-controller'), '--enable-distributed-snapshotting')).toBe('true');
    const rules = rulesOf(named(everything, 'ClusterRole', 'tidemark-snapshot-controller'));
    expect(rules).toContainEqual({ apiGroups: [''], resources: ['nodes'], verbs: ['list', 'watch'] });
  });

  it('follows node.kubeletDir everywhere', async () => {
    const spec = podSpec(named(parseAll(await helmTemplate({ 'node.kubeletDir': '/var/lib/k0s/kubelet' })), 'DaemonSet', 'tidemark-node'));
    const text = JSON.stringify(spec);
    expect(text).not.toContain('/var/lib/kubelet');
    expect(flag(container(spec, 'tidemark'), '--csi-endpoint')).toBe(`unix:///var/lib/k0s/kubelet/plugins/${DRIVER}/csi.sock`);
    expect(flag(container(spec, 'node-driver-registrar'), '--kubelet-registration-path')).toBe(`/var/lib/k0s/kubelet/plugins/${DRIVER}/csi.sock`);
  });

  it('describes the driver, the storage class and the snapshot classes', async () => {
    expect(named(defaults, 'CSIDriver', DRIVER)).toMatchObject({
      spec: { attachRequired: false, podInfoOnMount: true, fsGroupPolicy: 'File', storageCapacity: true, volumeLifecycleModes: ['Persistent'] },
    });
    expect(named(defaults, 'StorageClass', 'tidemark')).toMatchObject({
      provisioner: DRIVER,
      volumeBindingMode: 'WaitForFirstConsumer',
      allowVolumeExpansion: true,
      reclaimPolicy: 'Delete',
      parameters: { 'csi.storage.k8s.io/fstype': 'ext4' },
    });
    const tuned = named(
      parseAll(await helmTemplate({ 'storageClass.retentionAge': '7d', 'storageClass.retentionSize': '10Gi', 'storageClass.trackingGranularity': '4Ki', 'storageClass.fsType': 'xfs' })),
      'StorageClass',
      'tidemark',
    );
    expect((tuned as unknown as { parameters: Record<string, string> }).parameters).toEqual({
      'csi.storage.k8s.io/fstype': 'xfs',
      trackingGranularity: '4Ki',
      retentionSize: '10Gi',
      retentionAge: '7d',
    });
    expect(named(defaults, 'VolumeSnapshotClass', 'tidemark')).toMatchObject({ driver: DRIVER, deletionPolicy: 'Delete' });
    expect(named(defaults, 'VolumeGroupSnapshotClass', 'tidemark')).toMatchObject({ apiVersion: 'groupsnapshot.storage.k8s.io/v1', driver: DRIVER });
  });

  it('keeps manifests/ in sync with the chart (hack/render-manifests.sh --check)', async () => {
    const result = await run('bash', ['hack/render-manifests.sh', '--check'], { env: { ...process.env, HELM } });
    expect({ code: result.code, diff: result.stdout.slice(0, 4000), stderr: result.stderr }).toEqual({ code: 0, diff: '', stderr: expect.stringContaining('matches') });
    // The kustomization lists every file, and nothing else.
    const kustomization = fs.readFileSync(path.join(ROOT, 'manifests', 'kustomization.yaml'), 'utf8');
    const listed = [...kustomization.matchAll(/^ {2}- (\S+)$/gm)].map((m) => m[1]).sort();
    const files = fs
      .readdirSync(path.join(ROOT, 'manifests'), { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
      .sort();
    expect(listed).toEqual(files);
  });
});

describe('image definition', () => {
  const list = fs.readFileSync(path.join(ROOT, 'hack', 'image.list'), 'utf8');
  const entries = (kind: string) => [...list.matchAll(new RegExp(`^${kind} (.+)$`, 'gm'))].map((m) => m[1]!.trim());
  const dockerfile = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');

  it('gives the Dockerfile the entrypoint and environment of hack/image.list', () => {
    const entrypoint = /^ENTRYPOINT \["([^"]+)"\]$/m.exec(dockerfile)?.[1];
    expect(entrypoint).toBe(entries('entrypoint')[0]);
    const env = [...dockerfile.matchAll(/^ENV (\S+)$/gm)].map((m) => m[1]);
    expect(env).toEqual(entries('env'));
    // Its contents come from the one script that reads the list.
    expect(dockerfile).toMatch(/bash hack\/build-image\.sh stage-app \/app/);
    expect(dockerfile).toMatch(/build-image\.sh rootfs \/rootfs --app \/app/);
    expect(dockerfile).toMatch(/^FROM scratch$/m);
  });

  it('lists files that the built checkout has, and the host tools the daemon runs', () => {
    for (const file of entries('file')) expect({ file, exists: fs.existsSync(path.join(ROOT, file)) }).toEqual({ file, exists: true });
    // Every tool src/host and src/util start is in the list.
    const sources = ['src/host', 'src/util'].flatMap((dir) =>
      fs
        .readdirSync(path.join(ROOT, dir))
        .filter((f) => f.endsWith('.ts'))
        .map((f) => fs.readFileSync(path.join(ROOT, dir, f), 'utf8')),
    );
    const started = new Set(sources.flatMap((text) => [...text.matchAll(/(?:runTool|spawn|run)\('([a-z0-9._-]+)'/g)].map((m) => m[1]!)));
    expect([...started].filter((tool) => !entries('tool').includes(tool))).toEqual([]);
  });
});

suiteNeeding([{ what: 'shellcheck', present: () => onPath('shellcheck'), install: 'apt-get install shellcheck (hack/setup.sh)' }])('shell scripts', () => {
  // Every script under hack/, so that a new one is checked without being listed here.
  const hack = path.join(ROOT, 'hack');
  const scripts = [...fs.readdirSync(hack).map((f) => `hack/${f}`), ...fs.readdirSync(path.join(hack, 'lib')).map((f) => `hack/lib/${f}`)].filter((f) => f.endsWith('.sh')).sort();
  // The guest's /init runs under busybox sh, not bash.
  const posix = new Set(['hack/guest-init.sh']);

  it('finds the scripts', () => {
    expect(scripts).toEqual(expect.arrayContaining(['hack/kind-up.sh', 'hack/local-cluster.sh', 'hack/kernel-tests.sh', 'hack/lib/processes.sh']));
  });

  it.each(scripts)('%s passes a syntax check and shellcheck', async (script) => {
    const syntax = await run(posix.has(script) ? 'sh' : 'bash', ['-n', script]);
    expect({ script, code: syntax.code, stderr: syntax.stderr }).toEqual({ script, code: 0, stderr: '' });
    const lint = await run('shellcheck', ['--severity=style', '--external-sources', ...(posix.has(script) ? ['--shell=sh'] : []), script]);
    expect({ script, code: lint.code, output: lint.stdout }).toEqual({ script, code: 0, output: '' });
  });
});
