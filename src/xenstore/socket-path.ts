/**
 * Where xenstored's Unix socket is, by the rule libxenstore (`xs_daemon_socket`) and pyxs use:
 * `--socket`, else `$XENSTORED_PATH`, else `$XENSTORED_RUNDIR/socket`, else
 * `/var/run/xenstored/socket`. The daemon serves there and every command looks there.
 */

export function socketPath(explicit: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (explicit) return explicit;
  if (env.XENSTORED_PATH) return env.XENSTORED_PATH;
  return `${env.XENSTORED_RUNDIR || "/var/run/xenstored"}/socket`;
}
