// The anchors of the queue benchmark, driven the same way as basis-queue:
//   node anchors.mjs worker  <graphile|bullmq> <url> <concurrency>
//   node anchors.mjs produce <graphile|bullmq> <url> <jobs> <burst|paced> <producers>
// A worker prints "ready" once connected and, on SIGTERM, appends each job's
// enqueue-to-start latency (µs) to $LATENCY_FILE. A producer enqueues no-op jobs stamped
// with their enqueue time and prints elapsed_ms once no job is left unfinished.
import { appendFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { run, makeWorkerUtils } from "graphile-worker";
import { Queue, Worker } from "bullmq";
import pg from "pg";

const [role, system, url, ...rest] = process.argv.slice(2);
const micros = () => Math.round((performance.timeOrigin + performance.now()) * 1000);
const redis = (u) => {
  const p = new URL(u);
  return { host: p.hostname, port: Number(p.port || 6379), maxRetriesPerRequest: null };
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function worker(concurrency) {
  const seen = [];
  const noop = async (payload) => { seen.push(micros() - payload.t); };
  let stop;
  if (system === "graphile") {
    const runner = await run({
      connectionString: url, concurrency, maxPoolSize: concurrency + 2, noHandleSignals: true,
      taskList: { noop: async (payload) => noop(payload) },
    });
    stop = () => runner.stop();
  } else {
    const w = new Worker("bench", async (job) => noop(job.data), { connection: redis(url), concurrency });
    await w.waitUntilReady();
    stop = () => w.close();
  }
  console.log("ready");
  process.on("SIGTERM", async () => {
    await stop();
    if (process.env.LATENCY_FILE && seen.length) appendFileSync(process.env.LATENCY_FILE, seen.join("\n") + "\n");
    process.exit(0);
  });
}

async function produce(jobs, mode, producers) {
  let add, left, close;
  if (system === "graphile") {
    const utils = await makeWorkerUtils({ connectionString: url });
    await utils.migrate();
    const client = new pg.Pool({ connectionString: url, max: 1 });
    add = (payload) => utils.addJob("noop", payload);
    left = async () => Number((await client.query("select count(*) from graphile_worker.jobs")).rows[0].count);
    close = async () => { await utils.release(); await client.end(); };
  } else {
    const q = new Queue("bench", { connection: redis(url) });
    await q.obliterate({ force: true });
    add = (payload) => q.add("noop", payload, { removeOnComplete: true, removeOnFail: true });
    left = async () => {
      const c = await q.getJobCounts("wait", "active", "delayed", "prioritized", "paused");
      return Object.values(c).reduce((a, b) => a + b, 0);
    };
    close = () => q.close();
  }
  const started = performance.now();
  if (mode === "paced") {
    for (let i = 0; i < jobs; i++) {
      const due = started + i * 2;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      await add({ t: micros() });
    }
  } else {
    let next = 0;
    await Promise.all(Array.from({ length: producers }, async () => {
      while (next++ < jobs) await add({ t: micros() });
    }));
  }
  const enqueued = performance.now() - started;
  const deadline = performance.now() + 300_000;
  while ((await left()) > 0) {
    if (performance.now() > deadline) throw new Error("jobs still unfinished after 300 s");
    await sleep(5);
  }
  console.log(`enqueued_ms ${Math.round(enqueued)}`);
  console.log(`elapsed_ms ${Math.round(performance.now() - started)}`);
  await close();
}

if (role === "worker") await worker(Number(rest[0] || 16));
else await produce(Number(rest[0]), rest[1] || "burst", Number(rest[2] || 8));
