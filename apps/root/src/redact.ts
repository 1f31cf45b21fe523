/**
 * What the root's logs must never print: passwords, tokens, environment values, secrets. pino
 * replaces these paths with `[redacted]` (startRoot's logger uses them; pass them to your own
 * logger when you give startRoot one), and request lines mask these query parameters.
 */
const KEYS = ['password', 'old_password', 'new_password', 'token', 'refresh_token', 'environment', 'env', 'secret', 'mqtt_secret', 'authorization', 'cookie', 'password_hash', 'jwt_secret', 'registry_auth'];

/** pino `redact.paths`: each key at the top and up to three levels down, plus request headers */
export const LOG_REDACT_PATHS: string[] = [
  ...KEYS,
  ...KEYS.map((k) => `*.${k}`),
  ...KEYS.map((k) => `*.*.${k}`),
  ...KEYS.map((k) => `*.*.*.${k}`),
  'req.headers.authorization',
  'req.headers.cookie',
];

export const LOG_REDACT = { paths: LOG_REDACT_PATHS, censor: '[redacted]' };

/** query parameters masked in the request line (`?token=` is how EventSource authenticates) */
export const LOG_REDACT_QUERY = /([?&](?:token|refresh_token|password|access_token)=)[^&]*/gi;
