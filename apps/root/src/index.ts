export { buildRootApp, DEFAULT_BODY_LIMIT, type RootAppOptions } from './app.ts';
export { startRoot, rootLogger, defaultDataDir, DEFAULT_ROOT_PORT, type RootConfig, type RootHandle } from './server.ts';
export { bootstrapAdmin, jwtSecret, ADMIN_USER, ROOT_ORGANIZATION, type BootstrapResult } from './bootstrap.ts';
export { DEFAULT_ACCESS_TTL_SEC, DEFAULT_REFRESH_TTL_SEC, type AuthSettings, type RootContext } from './context.ts';
export { noControlPlane, type ControlPlane, type LogOptions } from './control.ts';
export { EventHub, type EventListener } from './events.ts';
export { hashPassword, verifyPassword } from './auth/passwords.ts';
export { issueTokens, verifyToken } from './auth/tokens.ts';
export type { PluginOpts } from './plugins/types.ts';
export { instanceDoc } from './docs.ts';
export {
  checkJoinToken,
  clusterMqttSecret,
  loadRootTrust,
  mintJoinToken,
  rootTrust,
  tokenState,
  type MintOptions,
  type RootTrust,
  type TokenCheck,
  type TokenState,
} from './trust.ts';
export { LOG_REDACT, LOG_REDACT_PATHS } from './redact.ts';
export { AuditLog, type AuditOptions } from './audit.ts';
export { LoginLimiter, type LoginLimitOptions } from './auth/limiter.ts';
export { StreamRegistry } from './streams.ts';
export { MIN_PASSWORD_LENGTH, checkPassword } from './auth/passwords.ts';
export { checkExtraServiceRanges } from './overlay.ts';
