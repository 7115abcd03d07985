// Drives static/alyx-realtime.js against a live server (node --experimental-websocket): snapshot,
// a live insert, a dropped connection, then an insert made while away — which must arrive once.
const { AlyxRealtime } = require("../../static/alyx-realtime.js");
const base = process.argv[2];
const events = [];
let phase = 0;
const post = (title) => fetch(base + "/api/collections/posts", {
  method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ title }),
}).then((r) => r.json());
const rt = new AlyxRealtime(base.replace("http", "ws") + "/api/realtime", { maxBackoff: 500 });
const done = (ok, why) => { console.log(JSON.stringify({ ok, why, events })); rt.close(); process.exit(ok ? 0 : 1); };
setTimeout(() => done(false, "timeout"), 15000);
rt.subscribe("posts", { filter: 'title.startsWith("js ")' }, {
  snapshot: async (docs) => {
    events.push(["snapshot", docs.length]);
    if (phase === 0) { phase = 1; await post("js first"); }
  },
  change: async (kind, doc) => {
    events.push([kind, doc.title]);
    if (phase === 1 && doc.title === "js first") {
      phase = 2;
      rt.ws.close();              // the connection drops...
      await post("js while away"); // ...and a change happens meanwhile
    } else if (phase === 2 && doc.title === "js while away") {
      done(true, "resumed");
    }
  },
  error: (err) => events.push(["error", err.code]),
});
