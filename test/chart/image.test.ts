import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HostProcess, ROOT, must, onPath, rootUser, run, suiteNeeding, until } from './harness.js';

/**
 * The Docker-less image build (hack/build-image.sh): the OCI archive is well formed (index,
 * manifest, config and layer digests, sizes and diff_id agree), holds what hack/image.list
 * names, its root filesystem runs tidemark and the host tools, and a private containerd (never
 * the machine's own) imports it and runs its entrypoint. containerd and runc come from PATH,
 * else from Debian's packages (apt-get download, extracted into the test's directory).
 */

const suite = suiteNeeding([
  rootUser,
  { what: 'apt-get', present: () => onPath('apt-get') && onPath('dpkg-deb'), install: 'a Debian system' },
  { what: 'npm', present: () => onPath('npm'), install: 'hack/setup.sh' },
  { what: 'dist/', present: () => fs.existsSync(path.join(ROOT, 'dist', 'src', 'cli', 'main.js')), install: 'npm run build' },
]);

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const REF = 'docker.io/library/tidemark:chart-test';

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

suite('container image without Docker (hack/build-image.sh)', () => {
  let work: string;
  let archive: string;
  let rootfs: string;
  let layout: string;
  const list = fs.readFileSync(path.join(ROOT, 'hack', 'image.list'), 'utf8');
  const entries = (kind: string) => [...list.matchAll(new RegExp(`^${kind} (.+)$`, 'gm'))].map((m) => m[1]!.trim());

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'tm-image-'));
    archive = path.join(work, 'tidemark.oci.tar');
    rootfs = path.join(work, 'rootfs');
    await must('bash', ['hack/build-image.sh', '--out', archive, '--tag', 'tidemark:chart-test', '--rootfs', rootfs], { timeoutMs: 15 * 60_000 });
    layout = path.join(work, 'layout');
    fs.mkdirSync(layout);
    await must('tar', ['-xf', archive, '-C', layout]);
  }, 20 * 60_000);

  afterAll(() => {
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  const blob = (digest: string) => fs.readFileSync(path.join(layout, 'blobs', 'sha256', digest.replace(/^sha256:/, '')));
  const checked = (d: Descriptor) => {
    const data = blob(d.digest);
    expect({ digest: `sha256:${sha256(data)}`, size: data.length }).toEqual({ digest: d.digest, size: d.size });
    return data;
  };

  it('writes an OCI layout whose digests, sizes and diff_id agree', async () => {
    expect(JSON.parse(fs.readFileSync(path.join(layout, 'oci-layout'), 'utf8'))).toEqual({ imageLayoutVersion: '1.0.0' });
    const index = JSON.parse(fs.readFileSync(path.join(layout, 'index.json'), 'utf8')) as { schemaVersion: number; manifests: Descriptor[] };
    expect(index.schemaVersion).toBe(2);
    expect(index.manifests).toHaveLength(1);
    expect(index.manifests[0]!.annotations).toEqual({ 'io.containerd.image.name': REF, 'org.opencontainers.image.ref.name': REF });
    const manifest = JSON.parse(checked(index.manifests[0]!).toString()) as { config: Descriptor; layers: Descriptor[] };
    const config = JSON.parse(checked(manifest.config).toString()) as {
      architecture: string;
      os: string;
      config: { Entrypoint: string[]; Env: string[] };
      rootfs: { diff_ids: string[] };
    };
    expect(config.os).toBe('linux');
    expect(config.config.Entrypoint).toEqual(entries('entrypoint'));
    expect(config.config.Env).toEqual(entries('env'));
    expect(manifest.layers).toHaveLength(1);
    checked(manifest.layers[0]!);
    const layerFile = path.join(layout, 'blobs', 'sha256', manifest.layers[0]!.digest.slice(7));
    const uncompressed = await must('sh', ['-c', `gzip -dc '${layerFile}' | sha256sum`]);
    expect(`sha256:${uncompressed.split(' ')[0]}`).toBe(config.rootfs.diff_ids[0]);
    // What the list names is in the layer.
    const files = new Set((await must('tar', ['-tzf', layerFile])).split('\n').map((f) => f.replace(/^\.\//, '').replace(/\/$/, '')));
    for (const f of ['opt/tidemark/bin/tidemark', 'opt/tidemark/package.json', 'opt/tidemark/dist/src/cli/main.js', 'opt/tidemark/node_modules/@grpc/grpc-js/package.json', 'usr/local/bin/node', 'var/lib/dpkg/status']) {
      expect({ f, present: files.has(f) }).toEqual({ f, present: true });
    }
    // No development dependencies, no build tools.
    for (const f of ['opt/tidemark/node_modules/typescript', 'opt/tidemark/node_modules/jest', 'usr/bin/gcc', 'usr/bin/apt-get', 'usr/bin/dpkg']) expect({ f, present: files.has(f) }).toEqual({ f, present: false });
    const size = fs.statSync(archive).size;
    console.log(`image archive: ${(size / 2 ** 20).toFixed(1)} MiB compressed, ${files.size} entries`);
    expect(size).toBeLessThan(200 * 2 ** 20);
  });

  it('runs tidemark and every listed host tool from its root filesystem (chroot)', async () => {
    const env = { PATH: entries('env').find((e) => e.startsWith('PATH='))!.slice(5) };
    const version = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version as string;
    expect((await must('chroot', [rootfs, ...entries('entrypoint'), '--version'], { env })).trim()).toBe(version);
    const help = await must('chroot', [rootfs, 'tidemark', 'serve', '--help'], { env });
    expect(help).toContain('--csi-endpoint');
    for (const [tool, args] of [['nbd-client', ['--version']], ['nbdfuse', ['--version']], ['mkfs.xfs', ['-V']], ['mkfs.ext4', ['-V']], ['losetup', ['--version']], ['modprobe', ['--version']], ['fusermount3', ['--version']], ['xfs_growfs', ['-V']], ['resize2fs', []]] as const) {
      const result = await run('chroot', [rootfs, tool, ...args], { env });
      // resize2fs without arguments prints its usage and exits 1; the others exit 0.
      expect({ tool, ran: result.code === 0 || (tool === 'resize2fs' && /Usage/.test(result.stderr)) }).toEqual({ tool, ran: true });
    }
  });

  describe('in a private containerd', () => {
    let bin: string;
    let daemon: HostProcess | undefined;
    let address: string;

    beforeAll(async () => {
      const dir = path.join(work, 'containerd');
      fs.mkdirSync(dir);
      if (onPath('containerd') && onPath('ctr') && onPath('runc')) {
        bin = path.dirname((await must('sh', ['-c', 'command -v containerd'])).trim());
      } else {
        // Debian's packages, extracted here: nothing is installed on the machine.
        await must('apt-get', ['download', '-o', 'APT::Sandbox::User=root', 'containerd', 'runc'], { cwd: dir, timeoutMs: 300_000 });
        for (const deb of fs.readdirSync(dir).filter((f) => f.endsWith('.deb'))) await must('dpkg-deb', ['-x', path.join(dir, deb), path.join(dir, 'pkg')]);
        bin = path.join(dir, 'pkg', 'usr', 'bin');
        for (const f of fs.readdirSync(path.join(dir, 'pkg', 'usr', 'sbin'))) fs.copyFileSync(path.join(dir, 'pkg', 'usr', 'sbin', f), path.join(bin, f));
        fs.chmodSync(path.join(bin, 'runc'), 0o755);
      }
      address = path.join(dir, 'containerd.sock');
      fs.writeFileSync(
        path.join(dir, 'config.toml'),
        [
          'version = 2',
          `root = "${dir}/root"`,
          `state = "${dir}/state"`,
          // No CRI: this containerd only imports and runs one image.
          'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
          '[grpc]',
          `  address = "${address}"`,
          '[ttrpc]',
          `  address = "${address}.ttrpc"`,
          '',
        ].join('\n'),
      );
      daemon = new HostProcess('containerd', path.join(bin, 'containerd'), ['--config', path.join(dir, 'config.toml')], { ...process.env, PATH: `${bin}:${process.env.PATH}` }, false);
      daemon.start();
      await until('containerd to answer', async () => (await run(path.join(bin, 'ctr'), ['--address', address, 'version'])).code === 0, 30_000, () => daemon!.output.slice(-2000));
    }, 10 * 60_000);

    afterAll(async () => {
      await daemon?.stop();
    });

    const ctr = (args: string[]) => run(path.join(bin, 'ctr'), ['--address', address, '--namespace', 'k8s.io', ...args], { env: { ...process.env, PATH: `${bin}:${process.env.PATH}` }, timeoutMs: 300_000 });

    it('imports the archive with ctr -n k8s.io images import', async () => {
      const imported = await ctr(['images', 'import', archive]);
      expect({ code: imported.code, stderr: imported.stderr }).toEqual({ code: 0, stderr: '' });
      expect((await ctr(['images', 'ls', '-q'])).stdout.split('\n')).toContain(REF);
    }, 300_000);

    it('runs the image entrypoint', async () => {
      const plain = await ctr(['run', '--rm', REF, `tm-${process.pid}-a`]);
      expect(plain.stdout + plain.stderr).toContain('Usage: tidemark');
      const version = await ctr(['run', '--rm', REF, `tm-${process.pid}-b`, ...entries('entrypoint'), '--version']);
      expect({ code: version.code, out: version.stdout.trim() }).toEqual({ code: 0, out: JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version });
    }, 120_000);
  });
});
