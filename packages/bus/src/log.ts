/** The small logging surface the bus and the orchestrators use; pino's logger fits it. */
export interface Logger {
  debug(msg: string, ...args: unknown[]): void;
  info(msg: string, ...args: unknown[]): void;
  warn(msg: string, ...args: unknown[]): void;
  error(msg: string, ...args: unknown[]): void;
}

const noop = (): void => {};
export const silentLogger: Logger = { debug: noop, info: noop, warn: noop, error: noop };

const LEVELS = ['debug', 'info', 'warn', 'error'] as const;

/**
 * Logs to stderr with a prefix; debug lines only when OAK_DEBUG is set. `minLevel` (a pino level
 * name such as 'warn') drops the lines below it.
 */
export function consoleLogger(prefix: string, minLevel = 'info'): Logger {
  const min = Math.max(0, LEVELS.indexOf(minLevel as (typeof LEVELS)[number]));
  const on = (l: (typeof LEVELS)[number]): boolean => LEVELS.indexOf(l) >= (minLevel === 'fatal' ? 4 : min);
  const line = (level: string, msg: string, args: unknown[]): void => {
    const extra = args.map((a) => (a instanceof Error ? a.message : typeof a === 'string' ? a : JSON.stringify(a))).join(' ');
    process.stderr.write(`${new Date().toISOString()} ${level} [${prefix}] ${msg}${extra ? ` ${extra}` : ''}\n`);
  };
  return {
    debug: (m, ...a) => { if (process.env.OAK_DEBUG || (minLevel === 'debug' || minLevel === 'trace')) line('DEBUG', m, a); },
    info: (m, ...a) => { if (on('info')) line('INFO', m, a); },
    warn: (m, ...a) => { if (on('warn')) line('WARN', m, a); },
    error: (m, ...a) => { if (on('error')) line('ERROR', m, a); },
  };
}
