import winston from 'winston';

export type Logger = winston.Logger;

/** JSON lines on stderr, so stdout stays free for command output and data. */
export function createLogger(level = process.env.TIDEMARK_LOG_LEVEL ?? 'info', component = 'tidemark'): Logger {
  return winston.createLogger({
    level,
    defaultMeta: { component },
    format: winston.format.combine(winston.format.timestamp(), winston.format.errors({ stack: false }), winston.format.json()),
    transports: [new winston.transports.Stream({ stream: process.stderr })],
  });
}

/** A logger that drops everything, for tests and benchmarks that measure the engine alone. */
export function silentLogger(): Logger {
  return winston.createLogger({ silent: true, transports: [new winston.transports.Console({ silent: true })] });
}
