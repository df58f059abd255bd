// The anchors of the queue benchmark, driven the same way as basis-queue:
//   node anchors.mjs worker  <graphile|graphile-tuned|bullmq> <url> <concurrency>
//   node anchors.mjs produce <graphile|bullmq> <url> <jobs> <burst|paced|bulk|drain> <producers>
// A worker prints "ready" once connected and, on SIGTERM, appends each job's
// enqueue-to-start latency (µs) to $LATENCY_FILE; graphile-tuned is graphile-worker with
// its documented batching: a local queue and batched completion. A producer enqueues no-op
// jobs stamped with their enqueue time and prints elapsed_ms once no job is left
// unfinished; `bulk` enqueues them in one call (addJobs / addBulk) and prints enqueued_ms;
// `drain` enqueues nothing and times from the first finished job to an empty queue.
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
  if (system.startsWith("graphile")) {
    const tuned = system === "graphile-tuned"
      ? { preset: { worker: { localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 } } }
      : {};
    const runner = await run({
      connectionString: url, concurrency, maxPoolSize: concurrency + 2, noHandleSignals: true,
      taskList: { noop: async (payload) => noop(payload) }, ...tuned,
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
  let add, addAll, left, close;
  if (system === "graphile") {
    const utils = await makeWorkerUtils({ connectionString: url });
    await utils.migrate();
    const client = new pg.Pool({ connectionString: url, max: 1 });
    add = (payload) => utils.addJob("noop", payload);
    addAll = (payloads) => utils.addJobs(payloads.map((payload) => ({ identifier: "noop", payload })));
    left = async () => Number((await client.query("select count(*) from graphile_worker.jobs")).rows[0].count);
    close = async () => { await utils.release(); await client.end(); };
  } else {
    const q = new Queue("bench", { connection: redis(url) });
    if (mode !== "drain") await q.obliterate({ force: true });
    const opts = { removeOnComplete: true, removeOnFail: true };
    add = (payload) => q.add("noop", payload, opts);
    addAll = (payloads) => q.addBulk(payloads.map((data) => ({ name: "noop", data, opts })));
    left = async () => {
      const c = await q.getJobCounts("wait", "active", "delayed", "prioritized", "paused");
      return Object.values(c).reduce((a, b) => a + b, 0);
    };
    close = () => q.close();
  }
  if (mode === "bulk") {
    const payloads = Array.from({ length: jobs }, () => ({ t: micros() }));
    const started = performance.now();
    await addAll(payloads);
    console.log(`enqueued_ms ${Math.round(performance.now() - started)}`);
    return close();
  }
  if (mode === "drain") {
    await waitUntil(left, (n) => n >= jobs, 5);
    console.log("waiting");
    await waitUntil(left, (n) => n < jobs, 5);
    const started = performance.now();
    await waitUntil(left, (n) => n === 0, 5);
    console.log(`elapsed_ms ${Math.round(performance.now() - started)}`);
    return close();
  }
  const started = performance.now();
  if (mode === "paced") {
    for (let i = 0; i < jobs; i++) {
      const due = started + i * Number(process.env.PACE_MS || 2);
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
  await waitUntil(left, (n) => n === 0, 5);
  console.log(`enqueued_ms ${Math.round(enqueued)}`);
  console.log(`elapsed_ms ${Math.round(performance.now() - started)}`);
  await close();
}

// Polls `left` every `ms` (at most 300 s) until `done` holds for the unfinished jobs.
async function waitUntil(left, done, ms) {
  const deadline = performance.now() + 300_000;
  while (!done(await left())) {
    if (performance.now() > deadline) throw new Error("jobs still unfinished after 300 s");
    await sleep(ms);
  }
}

if (role === "worker") await worker(Number(rest[0] || 16));
else await produce(Number(rest[0]), rest[1] || "burst", Number(rest[2] || 8));
