import * as path from 'node:path';
import type { Command } from 'commander';
import { AdminClient } from '../api/client.js';

/** The store a node's daemon uses when nothing else is said (design: fixed names). */
export const DEFAULT_STORE = '/var/lib/tidemark';

export const ADMIN_SOCKET_FILE = 'admin.sock';

/** Options defined on the program and valid with every subcommand. */
export interface GlobalOptions {
  store?: string;
  adminSocket?: string;
  json?: boolean;
}

export function globals(command: Command): GlobalOptions {
  return command.optsWithGlobals<GlobalOptions>();
}

/** --store, then $TIDEMARK_STORE, then the node default. */
export function storeDir(options: GlobalOptions): string {
  return path.resolve(options.store ?? (process.env.TIDEMARK_STORE || DEFAULT_STORE));
}

/** --admin-socket, or admin.sock in the store. */
export function adminSocketPath(options: GlobalOptions): string {
  return path.resolve(options.adminSocket ?? path.join(storeDir(options), ADMIN_SOCKET_FILE));
}

/** Runs `fn` with a client of the daemon the options name, and closes it after. */
export async function withClient<T>(command: Command, fn: (client: AdminClient, options: GlobalOptions) => Promise<T>): Promise<T> {
  const options = globals(command);
  const client = new AdminClient(adminSocketPath(options));
  try {
    return await fn(client, options);
  } finally {
    client.close();
  }
}
