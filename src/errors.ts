/**
 * The error vocabulary of sixpn.
 *
 * Every failure that reaches an edge (HTTP status, DNS rcode, CLI exit code) is one of these
 * classes, each with a stable `code` that clients may match on and a `status` for HTTP edges.
 * The message is for humans and safe to show; anything internal goes in `cause`.
 */

export class SixpnError extends Error {
  readonly code: string = 'SIXPN_INTERNAL';
  readonly status: number = 500;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Bad input: malformed JSON, an invalid name or address, a value out of range. */
export class ValidationError extends SixpnError {
  override readonly code = 'SIXPN_INVALID';
  override readonly status = 400;
}

export class UnauthorizedError extends SixpnError {
  override readonly code = 'SIXPN_UNAUTHORIZED';
  override readonly status = 401;
}

/** The caller is known but outside the org that owns the thing it asked for. */
export class ForbiddenError extends SixpnError {
  override readonly code = 'SIXPN_FORBIDDEN';
  override readonly status = 403;
}

export class NotFoundError extends SixpnError {
  override readonly code = 'SIXPN_NOT_FOUND';
  override readonly status = 404;
}

/** Duplicate name or id, or a change that contradicts the current state. */
export class ConflictError extends SixpnError {
  override readonly code = 'SIXPN_CONFLICT';
  override readonly status = 409;
}

/** An address range or counter has no room left. */
export class ExhaustedError extends SixpnError {
  override readonly code = 'SIXPN_EXHAUSTED';
  override readonly status = 507;
}

/** The catalog store (file, Redis) cannot be reached or did not answer in time. */
export class StoreUnavailableError extends SixpnError {
  override readonly code = 'SIXPN_STORE_UNAVAILABLE';
  override readonly status = 503;
}

/** Configuration that cannot be used; the message names the key. */
export class ConfigError extends SixpnError {
  override readonly code = 'SIXPN_CONFIG';
  override readonly status = 500;
}

/** Every candidate machine is at its hard limit and the queue wait ran out. */
export class NoCapacityError extends SixpnError {
  override readonly code = 'SIXPN_NO_CAPACITY';
  override readonly status = 503;
}

/** No machine could be reached (refused, unreachable, connect timeout) after the retries. */
export class UpstreamUnreachableError extends SixpnError {
  override readonly code = 'SIXPN_UPSTREAM_UNREACHABLE';
  override readonly status = 502;
}

/** A machine accepted the request but did not answer in time. */
export class UpstreamTimeoutError extends SixpnError {
  override readonly code = 'SIXPN_UPSTREAM_TIMEOUT';
  override readonly status = 504;
}

/** A machine run by a host did not reach `started` (its command failed, the host could not set it up or did not answer). */
export class MachineFailedError extends SixpnError {
  override readonly code = 'SIXPN_MACHINE_FAILED';
  override readonly status = 502;
}

/** A fly-replay a machine sent that the proxy cannot follow (logged; the caller gets 502). */
export class ReplayInvalidError extends SixpnError {
  override readonly code = 'SIXPN_REPLAY_INVALID';
  override readonly status = 502;
}

/** A replay was asked for a request whose body was not kept (over 1 MiB: src/proxy/steering.ts). */
export class ReplayBodyTooLargeError extends SixpnError {
  override readonly code = 'SIXPN_REPLAY_BODY_TOO_LARGE';
  override readonly status = 413;
}

/** A replayed request asked for yet another replay past the bound (src/proxy/steering.ts MAX_REPLAYS) or after a fallback. */
export class ReplayLoopError extends SixpnError {
  override readonly code = 'SIXPN_REPLAY_LOOP';
  override readonly status = 508;
}

/** No machine a steering constraint allows has room (a forced region or machine). */
export class SteerUnavailableError extends SixpnError {
  override readonly code = 'SIXPN_STEER_UNAVAILABLE';
  override readonly status = 503;
}

/**
 * Flycast proxy: the app had no started machine with room, and the one started for the caller
 * failed or did not accept connections within `[autostart] start_timeout`.
 */
export class StartFailedError extends SixpnError {
  override readonly code = 'SIXPN_START_FAILED';
  override readonly status = 503;
}

/** Every error class with its code and status: the README table is checked against this list. */
export const ERROR_CLASSES = [
  ValidationError,
  UnauthorizedError,
  ForbiddenError,
  NotFoundError,
  ConflictError,
  ExhaustedError,
  StoreUnavailableError,
  ConfigError,
  NoCapacityError,
  UpstreamUnreachableError,
  UpstreamTimeoutError,
  MachineFailedError,
  ReplayInvalidError,
  ReplayBodyTooLargeError,
  ReplayLoopError,
  SteerUnavailableError,
  StartFailedError,
] as const;

/** Process exit codes for the CLI, by error code (sysexits-like). */
export function exitCodeFor(err: unknown): number {
  if (!(err instanceof SixpnError)) return 1;
  switch (err.code) {
    case 'SIXPN_INVALID':
      return 2;
    case 'SIXPN_UNAUTHORIZED':
    case 'SIXPN_FORBIDDEN':
      return 3;
    case 'SIXPN_NOT_FOUND':
      return 4;
    case 'SIXPN_CONFLICT':
      return 5;
    case 'SIXPN_STORE_UNAVAILABLE':
      return 69;
    case 'SIXPN_CONFIG':
      return 78;
    default:
      return 1;
  }
}
