// An independent client: the official NATS JavaScript client sends provisioning commands, each
// twice with the same request id, and prints what it was answered (one JSON line).
// usage: node js_client.cjs NATS_URL
const { connect, StringCodec } = require("nats");

(async () => {
  const nc = await connect({ servers: process.argv[2] });
  const sc = StringCodec();
  const req = async (subject, body) => {
    const m = await nc.request(subject, sc.encode(JSON.stringify(body)), { timeout: 10000 });
    return { code: (m.headers && m.headers.get("Nats-Service-Error-Code")) || "", data: JSON.parse(sc.decode(m.data)) };
  };
  const add = { requestId: "js-1", objectClass: "AccountObjectClass", attributes: { login: ["js-anne"] } };
  const mod = { requestId: "js-2", identifiers: { login: ["js-anne"] }, changes: { fullName: { replace: ["Anne"] } } };
  const out = {};
  out.add1 = await req("prov.cmd.demo.add", add);
  out.add2 = await req("prov.cmd.demo.add", add);
  out.mod1 = await req("prov.cmd.demo.modify", mod);
  out.mod2 = await req("prov.cmd.demo.modify", mod);
  out.reused = await req("prov.cmd.demo.add", { ...add, attributes: { login: ["someone-else"] } });
  out.bad = await req("prov.cmd.demo.add", { objectClass: "AccountObjectClass", attributes: {} });
  console.log(JSON.stringify(out));
  await nc.close();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
