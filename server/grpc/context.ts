/**
 * What every RPC handler needs, passed in rather than imported.
 */
import type { Access } from "../auth/access.ts";
import type { CoreConfig } from "../config.ts";
import type { Logger } from "../log.ts";
import type { ChatHub } from "../rooms/hub.ts";
import type { IdempotencyIndex } from "../rooms/idempotency.ts";
import type { Presence } from "../rooms/presence.ts";
import type { CallScopes } from "./call_scope.ts";

export interface HandlerContext {
  /** Rooms of gRPC-framed messages (framing.ts): framed once, shared. */
  readonly hub: ChatHub<Uint8Array>;
  readonly calls: CallScopes;
  readonly config: Readonly<CoreConfig>;
  readonly log: Logger;
  /** Who may speak: authentication and abuse limits. */
  readonly access: Access;
  /** Who is in which room (with --presence; shared by cores on a broker). */
  readonly presence?: Presence;
  /** Keyed posts, of every RPC (undefined with --idempotency-window 0). */
  readonly idempotency?: IdempotencyIndex;
}
