import assert from "node:assert/strict";
import { clientIp, ipKey } from "./ip_limits.ts";

const info = (hostname: string) => ({
  remoteAddr: { transport: "tcp", hostname, port: 1234 },
});

Deno.test("ipKey() keeps IPv4, keys IPv6 by its /64, unmaps IPv4-mapped addresses", () => {
  assert.equal(ipKey("203.0.113.7"), "203.0.113.7");
  assert.equal(ipKey(" 203.0.113.7:8080 "), "203.0.113.7");
  assert.equal(ipKey("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
  assert.equal(ipKey("2001:0DB8:0001:0002:ffff:1:2:3"), "2001:db8:1:2::/64");
  assert.equal(ipKey("[2001:db8:1:2::9]:443"), "2001:db8:1:2::/64");
  assert.equal(ipKey("2001:db8::1"), "2001:db8:0:0::/64");
  assert.equal(ipKey("::1"), "0:0:0:0::/64");
  assert.equal(ipKey("fe80::1%eth0"), "fe80:0:0:0::/64");
  assert.equal(ipKey("::ffff:192.0.2.1"), "192.0.2.1");
  assert.equal(ipKey("not-an-address"), "not-an-address");
  assert.equal(ipKey("1::2::3"), "1::2::3");
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
