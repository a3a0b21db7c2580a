/**
 * The kernel NBD path's scenarios, run inside the qemu guest of hack/kernel-tests.sh (a
 * Debian kernel with nbd.ko, the host's root filesystem over 9p). Not a jest file: the guest
 * runs it with node, and it writes one line per scenario to OUT/results:
 *
 *   ok NAME SECONDS [facts as JSON]
 *   not ok NAME SECONDS reason
 *
 * test/kernel/kernel.test.ts boots the guest and turns each line into a test.
 *
 *   node dist/test/kernel/guest-scenarios.js OUT
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CsiClient, mountCapability } from '../csi/helpers.js';
import { sample } from '../support/metrics.js';

const out = path.resolve(process.argv[2] ?? '/tmp/kernel-out');
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const store = '/tmp/store';
const NODE = 'guest';
const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const METRICS_PORT = 9810;

function log(message: string): void {
  const line = `[${(performance.now() / 1000).toFixed(1)}s] ${message}`;
  console.log(line);
  fs.appendFileSync(path.join(out, 'guest.log'), `${line}\n`);
}

/** Runs a command; its output on failure is the error. */
function sh(command: string, options: { ok?: number[]; timeoutMs?: number } = {}): string {
  const result = spawnSync('bash', ['-c', command], { encoding: 'utf8', timeout: options.timeoutMs ?? 120_000 });
  const code = result.status ?? -1;
  if (!(options.ok ?? [0]).includes(code)) throw new Error(`${command} exited with ${code}: ${result.stderr || result.stdout}`.trim());
  return result.stdout;
}

class Daemon {
  private child: ChildProcess | undefined;
  private starts = 0;
  node!: CsiClient;
  controller!: CsiClient;
  identity!: CsiClient;

  async start(extra: string[] = []): Promise<number> {
    const begun = performance.now();
    const logFile = path.join(out, `daemon-${++this.starts}.log`);
    const fd = fs.openSync(logFile, 'w');
    const args = ['--store', store, 'serve', '--node-id', NODE, '--attach', 'kernel', '--metrics-address', `127.0.0.1:${METRICS_PORT}`, ...extra];
    this.child = spawn(process.execPath, [path.join(root, 'dist/src/cli/main.js'), ...args], {
      stdio: ['ignore', fd, fd],
    });
    fs.closeSync(fd);
    for (;;) {
      if (fs.readFileSync(logFile, 'utf8').includes('tidemark daemon ready')) break;
      if (this.child.exitCode !== null) throw new Error(`tidemark serve exited with ${this.child.exitCode}: ${fs.readFileSync(logFile, 'utf8').slice(-2000)}`);
      if (performance.now() - begun > 180_000) throw new Error('tidemark serve not ready after 180 s');
      await sleep(200);
    }
    const socket = path.join(store, 'csi.sock');
    this.node = new CsiClient('Node', socket);
    this.controller = new CsiClient('Controller', socket);
    this.identity = new CsiClient('Identity', socket);
    return (performance.now() - begun) / 1000;
  }

  log(): string {
    return fs.readFileSync(path.join(out, `daemon-${this.starts}.log`), 'utf8');
  }

  async kill(signal: NodeJS.Signals): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    for (const client of [this.node, this.controller, this.identity]) client.close();
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    await exited;
  }
}

interface Volume {
  id: string;
  name: string;
  staging: string;
}

async function createAndStage(daemon: Daemon, name: string, size: number): Promise<Volume> {
  const { volume } = await daemon.controller.call<{ volume: { volumeId: string } }>('CreateVolume', {
    name,
    capacityRange: { requiredBytes: String(size) },
    volumeCapabilities: [mountCapability('ext4')],
  });
  const staging = `/tmp/staging/${name}`;
  fs.mkdirSync(staging, { recursive: true });
  await daemon.node.call('NodeStageVolume', { volumeId: volume.volumeId, stagingTargetPath: staging, volumeCapability: mountCapability('ext4') });
  return { id: volume.volumeId, name: volume.volumeId.split(':')[1]!, staging };
}

interface HealthStatus {
  status: string;
  reason: string;
  message: string;
}

/** What NodeGetVolumeHealth says is wrong with a volume; empty when it is healthy. */
async function problems(daemon: Daemon, volume: Volume): Promise<HealthStatus[]> {
  const response = await daemon.node.call<{ volumeHealth?: { healthStatuses?: HealthStatus[] } }>('NodeGetVolumeHealth', { volumeId: volume.id });
  return response.volumeHealth?.healthStatuses ?? [];
}

/** One series of the daemon's /metrics (0 when it is not there). */
async function metric(series: string): Promise<number> {
  return sample(await (await fetch(`http://127.0.0.1:${METRICS_PORT}/metrics`)).text(), series) ?? 0;
}

/** Whether the running kernel has cachestat(2) (Linux 6.5), which read replies from the image file need. */
function kernelHasCachestat(): boolean {
  const [major = 0, minor = 0] = os.release().split('.').map((part) => parseInt(part, 10));
  return major > 6 || (major === 6 && minor >= 5);
}

function deviceOf(staging: string): string {
  return sh(`findmnt -n -o SOURCE --target ${staging}`).trim();
}

function mountOptions(staging: string): string[] {
  return sh(`findmnt -n -o OPTIONS --target ${staging}`).trim().split(',');
}

/** The volume as the engine holds it, read through the admin API, into a file. */
function engineImage(volume: Volume, file: string): string {
  sh(`node ${root}/dist/src/cli/main.js --store ${store} volume read ${volume.name} -o ${file}`);
  return file;
}

/**
 * A writer in the guest: every `intervalMs` it writes a new 16 KiB file (content: its own
 * number) with fsync, and logs the number once fsync returned, plus how long the write took.
 */
function startWriter(dir: string, logFile: string, intervalMs: number): ChildProcess {
  const script = `i=0; while :; do i=$((i+1)); s=$(date +%s%N); yes "$i" | head -c 16384 > ${dir}/w.$i.tmp && dd if=${dir}/w.$i.tmp of=${dir}/w.$i bs=16k conv=fsync status=none 2>>${logFile}.err && rm -f ${dir}/w.$i.tmp && echo "$i $(( ($(date +%s%N) - s) / 1000000 ))" >> ${logFile} || echo "ERR $i" >> ${logFile}; sleep ${intervalMs / 1000}; done`;
  return spawn('bash', ['-c', script], { stdio: 'ignore' });
}

async function stopWriter(writer: ChildProcess): Promise<void> {
  const exited = new Promise<void>((resolve) => writer.once('exit', () => resolve()));
  writer.kill('SIGTERM');
  await exited;
}

interface WriterLog {
  acked: number[];
  errors: string[];
  longestMs: number;
}

function readWriterLog(logFile: string): WriterLog {
  const lines = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').trim().split('\n').filter(Boolean) : [];
  const acked: number[] = [];
  const errors: string[] = [];
  let longestMs = 0;
  for (const line of lines) {
    if (line.startsWith('ERR')) errors.push(line);
    else {
      const [n, ms] = line.split(' ').map(Number);
      acked.push(n!);
      longestMs = Math.max(longestMs, ms!);
    }
  }
  const stderr = fs.existsSync(`${logFile}.err`) ? fs.readFileSync(`${logFile}.err`, 'utf8').trim() : '';
  if (stderr) errors.push(stderr);
  return { acked, errors, longestMs };
}

async function until(what: string, check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

type Facts = Record<string, unknown>;
const results: string[] = [];

async function scenario(name: string, body: () => Promise<Facts | void>): Promise<boolean> {
  const begun = performance.now();
  log(`scenario ${name}: start`);
  let line: string;
  let ok = false;
  try {
    const facts = (await body()) ?? {};
    line = `ok ${name} ${((performance.now() - begun) / 1000).toFixed(1)} ${JSON.stringify(facts)}`;
    ok = true;
  } catch (err) {
    line = `not ok ${name} ${((performance.now() - begun) / 1000).toFixed(1)} ${String((err as Error).stack ?? err).replace(/\n/g, ' | ')}`;
  }
  log(line);
  results.push(line);
  fs.appendFileSync(path.join(out, 'results'), `${line}\n`);
  return ok;
}

function check(condition: boolean, message: string): void {
  if (!condition) throw new Error(message);
}

async function main(): Promise<void> {
  fs.mkdirSync(out, { recursive: true });
  fs.rmSync(store, { recursive: true, force: true });
  const daemon = new Daemon();
  const startS = await daemon.start();
  log(`daemon ready in ${startS.toFixed(1)} s`);
  let survivor: Volume | undefined;

  await scenario('stage-kernel-path', async () => {
    const volume = await createAndStage(daemon, 'data', 64 * MiB);
    const device = deviceOf(volume.staging);
    check(/^\/dev\/nbd\d+$/.test(device), `staged on ${device}, not a kernel nbd device`);
    const backend = fs.readFileSync(`/sys/block/${path.basename(device)}/backend`, 'utf8').trim();
    check(backend === `tidemark:${volume.name}`, `backend is "${backend}"`);
    // Known data through the filesystem on the kernel device.
    sh(`head -c ${4 * MiB} /dev/urandom > /tmp/known && cp /tmp/known ${volume.staging}/known && sync`);
    await daemon.node.call('NodeUnstageVolume', { volumeId: volume.id, stagingTargetPath: volume.staging });
    check(!fs.existsSync(`/sys/block/${path.basename(device)}/pid`) || sh(`cat /sys/block/${path.basename(device)}/size`).trim() === '0', `${device} still connected after unstage`);
    // Byte for byte through the engine: its image, never through the kernel's read path.
    const image = engineImage(volume, '/tmp/data.img');
    sh(`e2fsck -fn ${image}`);
    sh(`debugfs -R "dump /known /tmp/known.back" ${image} 2>/dev/null && cmp /tmp/known /tmp/known.back`);
    await daemon.node.call('NodeStageVolume', { volumeId: volume.id, stagingTargetPath: volume.staging, volumeCapability: mountCapability('ext4') });
    // With the guest's caches dropped and the image then read whole through the engine, the
    // kernel client's reads find the image cached: on a kernel with cachestat they are
    // answered from the file (sendfile), and must read as they would from a copy.
    sh('echo 3 > /proc/sys/vm/drop_caches');
    engineImage(volume, '/tmp/data-again.img');
    sh(`cmp /tmp/known ${volume.staging}/known`);
    const sentFromFile = await metric('tidemark_nbd_read_bytes_sent_from_file_total');
    if (kernelHasCachestat()) check(sentFromFile > 0, `kernel ${os.release()} has cachestat, yet no read reply was sent from the image file`);
    survivor = volume;
    return { device, bytes: 4 * MiB, kernel: os.release(), sentFromFileBytes: sentFromFile };
  });

  await scenario('restart-under-writer', async () => {
    check(survivor !== undefined, 'needs the staged volume of stage-kernel-path');
    const volume = survivor!;
    const logFile = '/tmp/writer-restart.log';
    const writer = startWriter(volume.staging, logFile, 300);
    await until('the writer to get going', () => readWriterLog(logFile).acked.length >= 5, 120_000);
    const killedAt = performance.now();
    await daemon.kill('SIGKILL');
    log('daemon SIGKILLed under the writer');
    const restartS = await daemon.start();
    const ackedAtRestart = readWriterLog(logFile).acked.length;
    await until('writes after the restart', () => readWriterLog(logFile).acked.length >= ackedAtRestart + 10, 180_000);
    await stopWriter(writer);
    const stalledS = (performance.now() - killedAt) / 1000;
    const writes = readWriterLog(logFile);
    check(writes.errors.length === 0, `the writer saw errors: ${writes.errors.join('; ')}`);
    check(!mountOptions(volume.staging).includes('ro'), 'the filesystem went read-only');
    check(daemon.log().includes('kernel nbd device reconnected'), 'the daemon did not log the reconnect');
    for (const n of writes.acked) {
      const content = fs.readFileSync(`${volume.staging}/w.${n}`, 'utf8');
      check(content.length === 16384 && content.startsWith(`${n}\n`), `fsynced file w.${n} is wrong after the restart`);
    }
    const health = await problems(daemon, volume);
    check(health.length === 0, `volume reported unhealthy: ${JSON.stringify(health)}`);
    await daemon.node.call('NodeUnstageVolume', { volumeId: volume.id, stagingTargetPath: volume.staging });
    sh(`e2fsck -fn ${engineImage(volume, '/tmp/restart.img')}`);
    // Every fsynced write is in the engine, not only in the guest's page cache.
    for (const n of writes.acked) sh(`debugfs -R "cat /w.${n}" /tmp/restart.img 2>/dev/null | head -1 | grep -qx ${n}`);
    await daemon.node.call('NodeStageVolume', { volumeId: volume.id, stagingTargetPath: volume.staging, volumeCapability: mountCapability('ext4') });
    return { restartSeconds: Number(restartS.toFixed(1)), writesAcked: writes.acked.length, longestWriteMs: writes.longestMs, killToTenWritesAfterS: Number(stalledS.toFixed(1)) };
  });

  await scenario('outage-past-dead-timeout', async () => {
    // A daemon with a short timeout attaches a second volume; the first keeps its 120 s.
    await daemon.kill('SIGTERM');
    await daemon.start(['--nbd-dead-timeout', '10s']);
    const volume = await createAndStage(daemon, 'short', 32 * MiB);
    const logFile = '/tmp/writer-outage.log';
    const writer = startWriter(volume.staging, logFile, 300);
    await until('the writer to get going', () => readWriterLog(logFile).acked.length >= 3, 120_000);
    await daemon.kill('SIGKILL');
    log('daemon SIGKILLed for longer than the 10 s dead-connection timeout');
    await until('the writer to see an I/O error', () => readWriterLog(logFile).errors.length > 0, 120_000);
    await sleep(5000);
    await stopWriter(writer);
    await daemon.start(['--nbd-dead-timeout', '10s']);
    const health = await problems(daemon, volume);
    check(health.length > 0, 'after the outage the volume is reported healthy');
    const reason = health.map((h) => `${h.reason}: ${h.message}`).join('; ');
    // The first volume (120 s timeout) came through the same outage unharmed.
    if (survivor) {
      const other = await problems(daemon, survivor);
      check(other.length === 0, `the volume with the long timeout is unhealthy: ${JSON.stringify(other)}`);
      check(!mountOptions(survivor.staging).includes('ro'), 'the volume with the long timeout went read-only');
    }
    await daemon.node.call('NodeUnstageVolume', { volumeId: volume.id, stagingTargetPath: volume.staging });
    await daemon.node.call('NodeStageVolume', { volumeId: volume.id, stagingTargetPath: volume.staging, volumeCapability: mountCapability('ext4') });
    sh(`echo recovered > ${volume.staging}/after && sync`);
    const after = await problems(daemon, volume);
    check(after.length === 0, `still unhealthy after unstage and stage: ${JSON.stringify(after)}`);
    const writes = readWriterLog(logFile);
    await daemon.node.call('NodeUnstageVolume', { volumeId: volume.id, stagingTargetPath: volume.staging });
    return { errorsSeen: writes.errors.length, abnormalMessage: reason };
  });

  await scenario('online-expansion', async () => {
    check(survivor !== undefined, 'needs the staged volume of stage-kernel-path');
    const volume = survivor!;
    const caps = await daemon.identity.call<{ capabilities: { volumeExpansion?: { type: string } }[] }>('GetPluginCapabilities');
    const expansion = caps.capabilities.find((c) => c.volumeExpansion)?.volumeExpansion?.type;
    check(expansion === 'ONLINE', `expansion is advertised as ${expansion}`);
    const before = Number(sh(`df -B1 --output=size ${volume.staging} | tail -1`).trim());
    const device = deviceOf(volume.staging);
    const newSize = 128 * MiB;
    await daemon.controller.call('ControllerExpandVolume', { volumeId: volume.id, capacityRange: { requiredBytes: String(newSize) } });
    const response = await daemon.node.call<{ capacityBytes: string }>('NodeExpandVolume', { volumeId: volume.id, volumePath: volume.staging, capacityRange: { requiredBytes: String(newSize) } });
    const deviceBytes = Number(sh(`blockdev --getsize64 ${device}`).trim());
    const after = Number(sh(`df -B1 --output=size ${volume.staging} | tail -1`).trim());
    check(Number(response.capacityBytes) === newSize, `NodeExpandVolume answered ${response.capacityBytes}`);
    check(deviceBytes === newSize, `${device} is ${deviceBytes} bytes`);
    check(after > before * 1.8, `the filesystem grew from ${before} only to ${after}`);
    sh(`cmp /tmp/known ${volume.staging}/known && head -c ${80 * MiB} /dev/zero > ${volume.staging}/big && sync && rm ${volume.staging}/big`);
    check(!mountOptions(volume.staging).includes('ro'), 'the filesystem went read-only');
    await daemon.node.call('NodeUnstageVolume', { volumeId: volume.id, stagingTargetPath: volume.staging });
    sh(`e2fsck -fn ${engineImage(volume, '/tmp/grown.img')}`);
    return { deviceBytesBefore: 64 * MiB, deviceBytesAfter: deviceBytes, filesystemBytesBefore: before, filesystemBytesAfter: after };
  });

  await daemon.kill('SIGTERM');

  await scenario('csi-sanity-node', async () => {
    // hack/csi-sanity.sh starts its own daemons (attach auto: the kernel path here).
    const output = sh(`cd ${root} && KEEP=1 CSI_SANITY_FOCUS='Node Service' CSI_SANITY_START_TIMEOUT=180 bash hack/csi-sanity.sh 2>&1`, { ok: [0, 1], timeoutMs: 1_800_000 });
    fs.writeFileSync(path.join(out, 'csi-sanity.log'), output);
    const summaries = [...output.matchAll(/csi-sanity \((mount|block)\): (\d+) passed, (\d+) failed, (\d+) skipped/g)];
    check(summaries.length === 2, `csi-sanity printed no summaries: ${output.slice(-3000)}`);
    const facts: Facts = {};
    for (const [, type, passed, failed, skipped] of summaries) {
      facts[type!] = { passed: Number(passed), failed: Number(failed), skipped: Number(skipped) };
      check(Number(failed) === 0 && Number(passed) > 0, `csi-sanity (${type}): ${passed} passed, ${failed} failed`);
    }
    // Every attachment csi-sanity caused went through the kernel path, none through nbdfuse.
    const kept = /work directory kept: (\S+)/.exec(output)?.[1];
    check(kept !== undefined, 'csi-sanity did not keep its work directory');
    const daemonLogs = sh(`cat ${kept}/*/daemon.log`);
    const attached = [...daemonLogs.matchAll(/"message":"volume attached","mode":"(\w+)"/g)].map((m) => m[1]);
    check(attached.length > 0 && attached.every((mode) => mode === 'kernel'), `csi-sanity attached through ${JSON.stringify([...new Set(attached)])}`);
    facts.kernelAttachments = attached.length;
    sh(`rm -rf ${kept}`);
    return facts;
  });
}

main().then(
  () => {
    log(`done: ${results.filter((r) => r.startsWith('ok')).length} ok, ${results.filter((r) => r.startsWith('not ok')).length} not ok`);
    process.exit(0);
  },
  (err: unknown) => {
    log(`guest scenarios aborted: ${String((err as Error).stack ?? err)}`);
    process.exit(1);
  },
);
