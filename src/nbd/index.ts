/**
 * The NBD data path. Usage from the daemon:
 *
 *   const nbd = new NbdServer(engine, logger);
 *   await nbd.listenUnix(path.join(store, 'nbd.sock'));   // always
 *   await nbd.listenTcp(10809);                           // only when asked; loopback by default
 *   ...
 *   await nbd.close();                                    // before engine.close()
 *
 * Every engine volume is an export of the same name. Clients reach it as
 * `nbd+unix:///VOLUME?socket=PATH` (qemu, libnbd tools, nbdfuse) or with
 * `nbd-client -unix PATH -N VOLUME /dev/nbdX`. While a client is attached its volume is held
 * (holder `nbd:<connection id>`), so in-place restores and deletes are refused with BUSY.
 */
export { NbdServer, type DirectSession, type NbdClientInfo, type NbdLoad, type NbdServerOptions } from './server.js';
export type { NbdBackend } from './backend.js';
export { MAX_REQUEST_BYTES } from './protocol.js';

/** The NBD URI of a volume served on a unix socket, as qemu and libnbd tools take it. */
export function nbdUnixUri(volume: string, socketPath: string): string {
  return `nbd+unix:///${escape(volume)}?socket=${escape(socketPath)}`;
}

/** Percent-encodes what a URI path or query value cannot hold; slashes stay readable. */
function escape(text: string): string {
  return text.replace(/[^A-Za-z0-9\-._~/:@+]/g, (c) => [...Buffer.from(c, 'utf8')].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''));
}
