import type { Logger } from '../util/log.js';
import { apiMessage, statusCode, type Kube, type ResourceType, type WatchEvent } from './kube.js';

export interface InformerOptions {
  /** A full re-list this often, so that nothing missed (or a timed state such as expiry) stays missed. */
  resyncMs?: number;
  /** Delay before the first retry after a failed list or watch; doubles up to 30 s. */
  retryMs?: number;
}

/**
 * Keeps a work queue told about every object of one type: lists, then watches from the list's
 * resourceVersion, and lists again when the watch ends badly (410 Gone, a dropped connection,
 * an API server restart) or when the resync period passes. Failures back off and are logged;
 * the loop never gives up and never stalls silently.
 */
export class Informer {
  private stopped = false;
  private wake: (() => void) | undefined;
  private watch: { stop(): void } | undefined;
  private loop: Promise<void> | undefined;
  private readonly resyncMs: number;
  private readonly retryMs: number;
  /** Bumped on every (re)list, for tests and metrics. */
  lists = 0;

  constructor(
    private readonly kube: Kube,
    private readonly type: ResourceType,
    private readonly onKey: (key: string) => void,
    private readonly logger: Logger,
    options: InformerOptions = {},
  ) {
    this.resyncMs = options.resyncMs ?? 60_000;
    this.retryMs = options.retryMs ?? 1000;
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.watch?.stop();
    this.wake?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      try {
        await this.listAndWatch();
        failures = 0;
      } catch (err) {
        failures++;
        const delay = Math.min(30_000, this.retryMs * 2 ** Math.min(failures - 1, 5));
        this.logger.warn('watch of custom resources failed; listing again', { resource: this.type.plural, failures, retryInMs: delay, error: apiMessage(err) });
        await this.sleep(delay);
      }
    }
  }

  /** One list and the watches that follow it, until a resync is due or the watch breaks. */
  private async listAndWatch(): Promise<void> {
    const list = await this.kube.list(this.type);
    this.lists++;
    for (const item of list.items) {
      const key = keyOf(item);
      if (key) this.onKey(key);
    }
    let resourceVersion = list.resourceVersion;
    const resyncAt = Date.now() + this.resyncMs;
    while (!this.stopped && Date.now() < resyncAt) {
      let gone = false;
      const handle = await this.kube.watch(this.type, resourceVersion, (event: WatchEvent) => {
        if (event.type === 'ERROR') {
          // 410 Gone: the resourceVersion is too old to watch from; only a new list helps.
          gone = true;
          this.watch?.stop();
          return;
        }
        const version = (event.object as { metadata?: { resourceVersion?: string } } | undefined)?.metadata?.resourceVersion;
        if (version) resourceVersion = version;
        if (event.type === 'BOOKMARK') return;
        const key = keyOf(event.object);
        if (key) this.onKey(key);
      });
      this.watch = handle;
      const ended = await Promise.race([handle.ended, this.sleep(Math.max(0, resyncAt - Date.now())).then(() => 'resync' as const)]);
      handle.stop();
      if (this.stopped || ended === 'resync') return;
      if (gone) return;
      if (ended !== undefined && !isAbort(ended)) {
        if (statusCode(ended) === 410) return;
        throw ended instanceof Error ? ended : new Error(String(ended));
      }
      // A watch the server closed normally (its timeout): carry on from where it stopped.
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      timer.unref();
      const previous = this.wake;
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        previous?.();
        done();
      };
    });
  }
}

export function keyOf(object: unknown): string | undefined {
  const meta = (object as { metadata?: { name?: unknown; namespace?: unknown } } | undefined)?.metadata;
  if (typeof meta?.name !== 'string') return undefined;
  return typeof meta.namespace === 'string' ? `${meta.namespace}/${meta.name}` : meta.name;
}

export function splitKey(key: string): { namespace: string; name: string } {
  const slash = key.indexOf('/');
  return { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

function isAbort(err: unknown): boolean {
  return err instanceof Error && (err.name === 'AbortError' || /aborted/i.test(err.message));
}
