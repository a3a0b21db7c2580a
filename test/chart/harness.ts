import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadAllYaml } from '@kubernetes/client-node';
import { PACKAGE_ROOT } from '../../src/util/package.js';
import { HostProcess, run, until, type Result } from '../support/processes.js';
import { CACHE, needing, root, type Requirement } from '../support/requirements.js';

export { HostProcess, run, until, type Result };

/**
 * Shared pieces of the packaging tests (test/chart): the chart, helm and kubectl from the
 * build cache (hack/build-k8s.sh), a control plane of our own (hack/control-plane.sh), and
 * the rule for missing tools, which is test/support/requirements.ts's: under CI=true a
 * missing tool fails the suite, elsewhere the suite is skipped with a warning that names it.
 */

export const ROOT = PACKAGE_ROOT;
export const CHART = path.join(ROOT, 'charts', 'tidemark');
export const RELEASE = 'tidemark';
export const NAMESPACE = 'tidemark-system';
export const DRIVER = 'csi.tidemark.dev';

export const K8S_BIN = path.join(CACHE, 'k8s', 'bin');
export const HELM = path.join(K8S_BIN, 'helm');
export const KUBECTL = path.join(K8S_BIN, 'kubectl');

/** Every optional part of the chart switched on. */
export const ALL_OPTIONAL: Record<string, string> = {
  'snapshotCRDs.install': 'true',
  'snapshotController.enabled': 'true',
  'metrics.service.enabled': 'true',
  'metrics.serviceMonitor.enabled': 'true',
  'resizer.enabled': 'true',
};

export const onPath = (command: string) => spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
export const built = (name: string): Requirement => ({
  what: name,
  present: () => fs.existsSync(path.join(K8S_BIN, name)),
  install: `bash hack/build-k8s.sh ${name}`,
});
export const rootUser: Requirement = root('the image test runs a private containerd');

/** `describe`, or `describe.skip` with a warning naming what is missing (test/support/requirements.ts). */
export const suiteNeeding = (requirements: Requirement[]): jest.Describe => needing(requirements).describe;

/** A command that must succeed; its stdout. */
export async function must(command: string, args: string[], options: Parameters<typeof run>[2] = {}): Promise<string> {
  const result = await run(command, args, options);
  if (result.code !== 0) throw new Error(`${path.basename(command)} ${args.join(' ')} failed (exit ${result.code}):\n${result.stderr}${result.stdout.slice(-2000)}`);
  return result.stdout;
}

const setArgs = (values: Record<string, string>) => Object.entries(values).flatMap(([k, v]) => ['--set', `${k}=${v}`]);

/** `helm template` of the chart; CRDs of crds/ (ours and the enabled subchart's) included. */
export function helmTemplate(values: Record<string, string> = {}, options: { release?: string; namespace?: string } = {}): Promise<string> {
  return must(HELM, ['template', options.release ?? RELEASE, CHART, '--namespace', options.namespace ?? NAMESPACE, '--include-crds', ...setArgs(values)]);
}

export function helm(args: string[]): Promise<Result> {
  return run(HELM, args);
}

/** A Kubernetes object as the tests read it (only the fields they use are typed). */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: unknown;
}

export function parseAll(text: string): K8sObject[] {
  // Helm leaves empty documents (a template that rendered nothing), which loadAllYaml cannot take.
  const documents = text.split(/^---[ \t]*$/m).filter((doc) => /^[^#\s]/m.test(doc));
  return documents.flatMap((doc) => loadAllYaml(doc) as K8sObject[]).filter((o) => !!o && typeof o === 'object' && 'kind' in o);
}

export const byKind = (objects: K8sObject[], kind: string) => objects.filter((o) => o.kind === kind);
export const named = (objects: K8sObject[], kind: string, name: string): K8sObject => {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  if (!found) throw new Error(`no ${kind} ${name} among ${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ')}`);
  return found;
};

// ---- the DaemonSet's pod spec, typed as far as the tests read it

export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { fieldRef?: { fieldPath: string } };
}
export interface Container {
  name: string;
  image: string;
  args?: string[];
  command?: string[];
  env?: EnvVar[];
  ports?: { name?: string; containerPort: number }[];
  volumeMounts?: { name: string; mountPath: string; mountPropagation?: string; readOnly?: boolean }[];
  livenessProbe?: { httpGet?: { path: string; port: number | string } };
  startupProbe?: { httpGet?: { path: string; port: number | string } };
  securityContext?: { privileged?: boolean; runAsUser?: number };
}
export interface PodSpec {
  serviceAccountName: string;
  containers: Container[];
  volumes: { name: string; hostPath?: { path: string; type?: string } }[];
}

export function podSpec(workload: K8sObject): PodSpec {
  return (workload as unknown as { spec: { template: { spec: PodSpec } } }).spec.template.spec;
}

export function container(spec: PodSpec, name: string): Container {
  const found = spec.containers.find((c) => c.name === name);
  if (!found) throw new Error(`no container ${name}; containers: ${spec.containers.map((c) => c.name).join(', ')}`);
  return found;
}

/** The value of a `--flag=value` argument, or undefined. */
export function flag(c: Container, name: string): string | undefined {
  const arg = (c.args ?? []).find((a) => a === name || a.startsWith(`${name}=`));
  if (arg === undefined) return undefined;
  return arg === name ? 'true' : arg.slice(name.length + 1);
}

// ---- a control plane of our own

export class ControlPlane {
  private constructor(
    readonly dir: string,
    readonly kubeconfig: string,
  ) {}

  /** hack/control-plane.sh up in a fresh directory (not the default one other tests use). */
  static async start(): Promise<ControlPlane> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tm-chart-cp-'));
    const up = await run('bash', [path.join(ROOT, 'hack', 'control-plane.sh'), 'up', '--dir', dir], { timeoutMs: 80 * 60_000 });
    if (up.code !== 0) throw new Error(`hack/control-plane.sh up failed (exit ${up.code}):\n${up.stderr.slice(-4000)}`);
    return new ControlPlane(dir, up.stdout.trim().split('\n').pop()!);
  }

  async stop(): Promise<void> {
    await run('bash', [path.join(ROOT, 'hack', 'control-plane.sh'), 'down', '--dir', this.dir], { timeoutMs: 120_000 });
  }

  kubectl(args: string[], input?: string): Promise<Result> {
    return run(KUBECTL, ['--kubeconfig', this.kubeconfig, ...args], input !== undefined ? { input } : {});
  }

  async k(args: string[], input?: string): Promise<string> {
    const result = await this.kubectl(args, input);
    if (result.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed (exit ${result.code}): ${result.stderr}`);
    return result.stdout;
  }

  async getJson<T>(args: string[]): Promise<T | undefined> {
    const result = await this.kubectl([...args, '-o', 'json']);
    if (result.code !== 0) {
      if (/NotFound/.test(result.stderr)) return undefined;
      throw new Error(`kubectl ${args.join(' ')}: ${result.stderr}`);
    }
    return JSON.parse(result.stdout) as T;
  }

  /** A kubeconfig that authenticates as a ServiceAccount (a bound token, one hour). */
  async serviceAccountKubeconfig(namespace: string, name: string, file: string): Promise<string> {
    const token = (await this.k(['create', 'token', name, '-n', namespace, '--duration', '1h'])).trim();
    const admin = fs.readFileSync(this.kubeconfig, 'utf8');
    const server = /server: (\S+)/.exec(admin)![1]!;
    const ca = /certificate-authority-data: (\S+)/.exec(admin)![1]!;
    const text = [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '- name: cp',
      '  cluster:',
      `    server: ${server}`,
      `    certificate-authority-data: ${ca}`,
      'users:',
      `- name: ${name}`,
      '  user:',
      `    token: ${token}`,
      'contexts:',
      `- name: ${name}`,
      '  context:',
      '    cluster: cp',
      `    user: ${name}`,
      `current-context: ${name}`,
      '',
    ].join('\n');
    fs.writeFileSync(file, text, { mode: 0o600 });
    return file;
  }
}

/** A TCP port on loopback that nothing listens on now. */
export async function freePort(): Promise<number> {
  const net = await import('node:net');
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}
