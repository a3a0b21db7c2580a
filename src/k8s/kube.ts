import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  Watch,
  setHeaderOptions,
  type CoreV1Event,
  type V1PersistentVolume,
  type V1PersistentVolumeClaim,
  type V1Pod,
} from '@kubernetes/client-node';
import { invalidArgument } from '../util/errors.js';

/** A custom resource type the daemon reads or writes: its group, version and plural. */
export interface ResourceType {
  group: string;
  version: string;
  plural: string;
  kind: string;
  /** Namespaced types take a namespace in every call; cluster-scoped ones do not. */
  namespaced: boolean;
}

export interface ObjectList {
  resourceVersion: string;
  items: unknown[];
}

export type WatchEvent = { type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK'; object: unknown } | { type: 'ERROR'; object: unknown };

/** What a watch returns: stop it, and learn how it ended. */
export interface WatchHandle {
  stop(): void;
  /** Resolves when the server or the network ends the watch, with the error if there was one. */
  ended: Promise<unknown>;
}

/**
 * The calls the reconcilers make on the API server, in one place so that their error
 * handling (404 as "absent", 409 as "changed under us") is decided once. Everything goes
 * through @kubernetes/client-node; the reconcilers never see its types.
 */
export class Kube {
  private readonly core: CoreV1Api;
  private readonly custom: CustomObjectsApi;
  private readonly watcher: Watch;

  constructor(readonly config: KubeConfig) {
    this.core = config.makeApiClient(CoreV1Api);
    this.custom = config.makeApiClient(CustomObjectsApi);
    this.watcher = new Watch(config);
  }

  /** `--kubeconfig FILE`, else the in-cluster service account (as the DaemonSet runs it). */
  static load(kubeconfig: string | undefined): Kube {
    const config = new KubeConfig();
    if (kubeconfig) {
      try {
        config.loadFromFile(kubeconfig);
      } catch (err) {
        throw invalidArgument(`--kubeconfig ${kubeconfig} cannot be used: ${err instanceof Error ? err.message : String(err)}`);
      }
      if (!config.getCurrentCluster()) throw invalidArgument(`--kubeconfig ${kubeconfig} names no current cluster`);
    } else {
      if (!process.env.KUBERNETES_SERVICE_HOST) throw invalidArgument('no --kubeconfig given and not running in a pod (KUBERNETES_SERVICE_HOST is unset); pass --kubeconfig or --reconcilers off');
      config.loadFromCluster();
    }
    return new Kube(config);
  }

  // ---- custom objects (ours and the snapshot API's) ------------------------------------

  async list(type: ResourceType): Promise<ObjectList> {
    const body = (await this.custom.listClusterCustomObject({ group: type.group, version: type.version, plural: type.plural })) as {
      metadata?: { resourceVersion?: string };
      items?: unknown[];
    };
    return { resourceVersion: body.metadata?.resourceVersion ?? '', items: body.items ?? [] };
  }

  /** The object, or undefined when it does not exist. */
  async get(type: ResourceType, namespace: string | undefined, name: string): Promise<unknown> {
    return absentOn404(() =>
      type.namespaced
        ? this.custom.getNamespacedCustomObject({ group: type.group, version: type.version, plural: type.plural, namespace: namespace!, name })
        : this.custom.getClusterCustomObject({ group: type.group, version: type.version, plural: type.plural, name }),
    );
  }

  async create(type: ResourceType, namespace: string | undefined, body: object): Promise<unknown> {
    return type.namespaced
      ? this.custom.createNamespacedCustomObject({ group: type.group, version: type.version, plural: type.plural, namespace: namespace!, body })
      : this.custom.createClusterCustomObject({ group: type.group, version: type.version, plural: type.plural, body });
  }

  /** Deletes an object; one already gone is not an error. */
  async delete(type: ResourceType, namespace: string | undefined, name: string): Promise<void> {
    await absentOn404(() =>
      type.namespaced
        ? this.custom.deleteNamespacedCustomObject({ group: type.group, version: type.version, plural: type.plural, namespace: namespace!, name })
        : this.custom.deleteClusterCustomObject({ group: type.group, version: type.version, plural: type.plural, name }),
    );
  }

  /**
   * Replaces the status of a namespaced object. `resourceVersion` makes it conditional: a
   * 409 means someone changed the object since it was read (the caller reads it again).
   */
  async replaceStatus(type: ResourceType, object: { metadata: { name: string; namespace: string; resourceVersion: string } }, status: object): Promise<unknown> {
    const { name, namespace } = object.metadata;
    return this.custom.replaceNamespacedCustomObjectStatus({
      group: type.group,
      version: type.version,
      plural: type.plural,
      namespace,
      name,
      body: { apiVersion: `${type.group}/${type.version}`, kind: type.kind, metadata: object.metadata, status },
    });
  }

  /** Sets the finalizers of a namespaced object, conditional on its resourceVersion. */
  async setFinalizers(type: ResourceType, meta: { name: string; namespace: string; resourceVersion: string }, finalizers: string[]): Promise<unknown> {
    return this.custom.patchNamespacedCustomObject(
      {
        group: type.group,
        version: type.version,
        plural: type.plural,
        namespace: meta.namespace,
        name: meta.name,
        body: { metadata: { finalizers, resourceVersion: meta.resourceVersion } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }

  // ---- core objects --------------------------------------------------------------------

  async getClaim(namespace: string, name: string): Promise<V1PersistentVolumeClaim | undefined> {
    return absentOn404(() => this.core.readNamespacedPersistentVolumeClaim({ namespace, name }));
  }

  async getVolume(name: string): Promise<V1PersistentVolume | undefined> {
    return absentOn404(() => this.core.readPersistentVolume({ name }));
  }

  async createClaim(namespace: string, body: V1PersistentVolumeClaim): Promise<V1PersistentVolumeClaim> {
    return this.core.createNamespacedPersistentVolumeClaim({ namespace, body });
  }

  /** Pods scheduled to a node, in one namespace; the API server filters by node. */
  async podsOnNode(namespace: string, node: string): Promise<V1Pod[]> {
    const list = await this.core.listNamespacedPod({ namespace, fieldSelector: `spec.nodeName=${node}` });
    return list.items;
  }

  async createEvent(namespace: string, body: CoreV1Event): Promise<void> {
    await this.core.createNamespacedEvent({ namespace, body });
  }

  // ---- watches -------------------------------------------------------------------------

  /** Watches a resource type cluster-wide from a resourceVersion; events arrive in order. */
  async watch(type: ResourceType, resourceVersion: string, onEvent: (event: WatchEvent) => void): Promise<WatchHandle> {
    const path = `/apis/${type.group}/${type.version}/${type.plural}`;
    let finish!: (err: unknown) => void;
    const ended = new Promise<unknown>((resolve) => (finish = resolve));
    const controller = await this.watcher.watch(
      path,
      { resourceVersion, allowWatchBookmarks: true },
      (phase: string, object: unknown) => onEvent({ type: phase as WatchEvent['type'], object }),
      (err: unknown) => finish(err ?? undefined),
    );
    return { stop: () => controller.abort(), ended };
  }
}

/** HTTP status of an API error, or undefined for errors that never reached the server. */
export function statusCode(err: unknown): number | undefined {
  if (err instanceof ApiException) return err.code;
  const code = (err as { code?: unknown; statusCode?: unknown } | undefined)?.statusCode;
  return typeof code === 'number' ? code : undefined;
}

/** The API server's own message for an error, which says what was wrong with a request. */
export function apiMessage(err: unknown): string {
  if (err instanceof ApiException) {
    const body = err.body as unknown;
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    try {
      const parsed = JSON.parse(text) as { message?: string };
      if (parsed.message) return parsed.message;
    } catch {
      // Not JSON: the text itself is the message.
    }
    return `HTTP ${err.code}: ${text.slice(0, 300)}`;
  }
  return err instanceof Error ? err.message : String(err);
}

async function absentOn404<T>(call: () => Promise<T>): Promise<T | undefined> {
  try {
    return await call();
  } catch (err) {
    if (statusCode(err) === 404) return undefined;
    throw err;
  }
}
