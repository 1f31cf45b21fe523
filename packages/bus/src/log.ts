/** The small logging surface the bus and the orchestrators use; pino's logger fits it. */
export interface Logger {
  debug(msg: string, ...args: unknown[]): void;
  info(msg: string, ...args: unknown[]): void;
  warn(msg: string, ...args: unknown[]): void;
  error(msg: string, ...args: unknown[]): void;
}

const noop = (): void => {};
export const silentLogger: Logger = { debug: noop, info: noop, warn: noop, error: noop };

/** Logs to stderr with a prefix; debug lines only when OAK_DEBUG is set. */
export function consoleLogger(prefix: string): Logger {
  const line = (level: string, msg: string, args: unknown[]): void => {
    const extra = args.map((a) => (a instanceof Error ? a.message : typeof a === 'string' ? a : JSON.stringify(a))).join(' ');
    process.stderr.write(`${new Date().toISOString()} ${level} [${prefix}] ${msg}${extra ? ` ${extra}` : ''}\n`);
  };
  return {
    debug: (m, ...a) => { if (process.env.OAK_DEBUG) line('DEBUG', m, a); },
    info: (m, ...a) => line('INFO', m, a),
    warn: (m, ...a) => line('WARN', m, a),
    error: (m, ...a) => line('ERROR', m, a),
  };
}
