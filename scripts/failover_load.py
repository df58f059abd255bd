"""The failover drill's load and its report (see scripts/failover-drill).

Load: `failover_load.py --seconds S --clients C --log FILE BASE...` runs C clients, each on
a keep-alive connection to one of the servers in turn, creating links with URLs that are
unique per request, and logs one line per request: when it ended (Unix seconds), its
status (0 when the connection failed or the request took longer than 10 s), how long it
took and the URL it created.

Report: `failover_load.py --report FILE --stored FILE --killed-at T --mode M --old N --new N`
reads that log and the URLs the new leader holds, and prints the figures.
"""

import argparse
import http.client
import json
import threading
import time
import urllib.parse


def load(args):
    stop_at = time.time() + args.seconds
    lock = threading.Lock()
    out = open(args.log, "w")

    def client(number):
        base = urllib.parse.urlsplit(args.bases[number % len(args.bases)])
        conn = None
        sequence = 0
        while time.time() < stop_at:
            sequence += 1
            url = f"https://example.com/drill/{number}/{sequence}"
            body = json.dumps({"longUrl": url})
            started = time.time()
            status = 0
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(base.hostname, base.port, timeout=10)
                conn.request("POST", "/shorten", body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                status = response.status
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
            ended = time.time()
            with lock:
                out.write(f"{ended:.3f}\t{status}\t{ended - started:.3f}\t{url}\n")
            if status != 201:
                time.sleep(0.05)  # a client backs off a little while the service is down

    threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.close()


def report(args):
    rows = []
    with open(args.report) as log:
        for line in log:
            ended, status, took, url = line.rstrip("\n").split("\t")
            rows.append((float(ended), int(status), float(took), url))
    rows.sort()
    stored = set(open(args.stored).read().split())
    killed = args.killed_at
    acknowledged = [r for r in rows if r[1] == 201]
    lost = [r for r in acknowledged if r[3] not in stored]
    after = [r for r in rows if r[0] > killed]
    failed = [r for r in after if r[1] != 201]
    first_failure = failed[0][0] if failed else None
    last_failure = failed[-1][0] if failed else None
    # Writes resumed with the first create that began after the first failure.
    first_ok = next(
        (r for r in after if r[1] == 201 and first_failure is not None and r[0] - r[2] > first_failure),
        None,
    )
    by_status = {}
    for r in failed:
        by_status[r[1]] = by_status.get(r[1], 0) + 1
    before = [r for r in rows if r[0] <= killed - 1]
    rate = len([r for r in before if r[1] == 201]) / max(1e-9, before[-1][0] - before[0][0]) if len(before) > 1 else 0
    slowest_failure = max((r[2] for r in failed), default=0)
    print(f"mode: {args.mode} replication; leader {args.old} killed, new leader {args.new or '(none)'}")
    print(f"requests: {len(rows)}, acknowledged creates: {len(acknowledged)} ({rate:.0f}/s before the kill)")
    print(f"acknowledged creates lost: {len(lost)}")
    if lost:
        window = killed - min(r[0] for r in lost)
        print(f"loss window: lost creates were acknowledged up to {window:.3f} s before the kill")
    if failed:
        print(f"error window: requests failed from {first_failure - killed:.1f} s to {last_failure - killed:.1f} s after the kill")
    if first_ok:
        print(f"writes resumed on the new leader {first_ok[0] - killed:.1f} s after the kill")
    else:
        print("writes never resumed")
    statuses = ", ".join(f"{'no answer' if s == 0 else s}: {n}" for s, n in sorted(by_status.items()))
    print(f"failed requests after the kill: {len(failed)} ({statuses or 'none'}); slowest failure {slowest_failure:.2f} s")
    bad = by_status.get(500, 0) + by_status.get(0, 0)
    if lost and args.mode == "synchronous" or bad or first_ok is None:
        print("DRILL FAILED")
        raise SystemExit(1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bases", nargs="*")
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--log")
    parser.add_argument("--report")
    parser.add_argument("--stored")
    parser.add_argument("--killed-at", type=float)
    parser.add_argument("--mode", default="synchronous")
    parser.add_argument("--old", default="")
    parser.add_argument("--new", default="")
    args = parser.parse_args()
    if args.report:
        report(args)
    else:
        load(args)


if __name__ == "__main__":
    main()
