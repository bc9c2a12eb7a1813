import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

export interface LogConfig {
  level?: string;
  /** 'json' (default) or 'logfmt'-like plain text */
  format?: 'json' | 'logfmt';
  /** write to this file instead of stderr */
  file?: string;
}

/** The root logger. Components take `root.child({component})`; reconciles add keys. */
export function newLogger(cfg: LogConfig = {}): Logger {
  const opts: LoggerOptions = {
    level: cfg.level ?? process.env.BERTH_LOG_LEVEL ?? 'info',
    base: undefined,
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  const dest = cfg.file ? pino.destination({ dest: cfg.file, mkdir: true, sync: false }) : pino.destination(2);
  if (cfg.format === 'logfmt') {
    opts.formatters = { level: (label) => ({ level: label }) };
  }
  return pino(opts, dest);
}

/** A logger that drops everything, for tests and benchmarks. */
export const silentLogger = (): Logger => pino({ level: 'silent' });
