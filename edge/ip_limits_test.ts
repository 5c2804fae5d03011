import assert from "node:assert/strict";
import { clientIp } from "./ip_limits.ts";

const info = (hostname: string) => ({
  remoteAddr: { transport: "tcp", hostname, port: 1234 },
});

Deno.test("clientIp() reads X-Forwarded-For only with trusted hops, right-most untrusted entry first", () => {
  const headers = new Headers({
    "x-forwarded-for": "198.51.100.9, 203.0.113.7, 10.0.0.2",
  });
  // Off: the TCP peer, whatever the header says.
  assert.equal(clientIp(info("10.0.0.1"), headers), "10.0.0.1");
  // One proxy: the address it saw, the last entry; the rest was sent by
  // the client and is not believed.
  assert.equal(clientIp(info("10.0.0.1"), headers, 1), "10.0.0.2");
  assert.equal(clientIp(info("10.0.0.1"), headers, 2), "203.0.113.7");
  // Fewer entries than hops: the left-most; none: the peer.
  assert.equal(clientIp(info("10.0.0.1"), headers, 5), "198.51.100.9");
  assert.equal(clientIp(info("10.0.0.1"), new Headers(), 1), "10.0.0.1");
  assert.equal(
    clientIp(
      info("10.0.0.1"),
      new Headers({ "x-forwarded-for": "2001:db8:1:2::77" }),
      1,
    ),
    "2001:db8:1:2::/64",
  );
  assert.equal(clientIp(info("2001:db8:1:2::5")), "2001:db8:1:2::/64");
  assert.equal(clientIp(undefined), undefined);
});
