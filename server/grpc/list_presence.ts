/**
 * ListPresence (unary): who is in a room now, over every core that shares
 * the broker (see server/rooms/presence.ts and docs/scale-out.md). With auth
 * on it needs a token that may subscribe to the room.
 */
import type { sendUnaryData, ServerUnaryCall } from "@grpc/grpc-js";
import type { PresenceRequest, PresenceResponse } from "../../gen/chat_pb.ts";
import { ChatError } from "../rooms/errors.ts";
import { validateRoom } from "../rooms/validate.ts";
import type { HandlerContext } from "./context.ts";
import { withCaller } from "./caller.ts";
import { toServiceError } from "./status.ts";

type Call = ServerUnaryCall<PresenceRequest, PresenceResponse>;

export function listPresenceHandler(ctx: HandlerContext) {
  return withCaller(
    ctx,
    (_call: Call, err, callback: sendUnaryData<PresenceResponse>) =>
      callback(err),
    (call, caller, callback): void => {
      ctx.hub.stats.callsStarted++;
      const { room } = call.request;
      (async () => {
        validateRoom(room);
        if (!ctx.presence) {
          throw new ChatError(
            "failed_precondition",
            "presence is off on this server (start it with --presence)",
          );
        }
        // After the checks that cost nothing: a refused query spends no
        // rate-limit token.
        ctx.access.allowPresence(caller, room);
        const users = await ctx.presence.list(room);
        return { users } as unknown as PresenceResponse;
      })().then(
        (res) => callback(null, res),
        (err) =>
          callback(
            toServiceError(
              err instanceof ChatError || !(err instanceof Error) ||
                err.name !== "BrokerUnavailableError"
                ? err
                : new ChatError("unavailable", err.message),
              (e) => ctx.log.error("ListPresence failed", e),
            ),
          ),
      );
    },
  );
}
