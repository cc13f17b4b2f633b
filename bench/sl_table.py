#!/usr/bin/env python3
"""Turns run_matrix.sh's JSON lines into the markdown table and the ratios to the targets."""
import argparse
import json
import statistics

NAMES = {
    "plaintext": "Sluice PLAINTEXT",
    "idempotent": "Sluice PLAINTEXT, idempotent producer",
    "txn100": "Sluice PLAINTEXT, transactional producer, 100 records per transaction",
    "ssl": "Sluice SSL",
    "sasl_ssl": "Sluice SASL_SSL+SCRAM-SHA-512",
    "sasl_ssl_iam": "Sluice SASL_SSL+OAUTHBEARER (MSK IAM tokens), IAM policy authorization",
    "sasl_ssl_audit_off": "Sluice SASL_SSL+SCRAM-SHA-512, audit trail off",
    "sasl_ssl_enc_off": "Sluice SASL_SSL+SCRAM-SHA-512, encryption at rest off",
    "sasl_ssl_base": "Sluice SASL_SSL+SCRAM-SHA-512, base build (--base-bin)",
    "sasl_ssl_json": "Sluice SASL_SSL+SCRAM-SHA-512, 1 KiB JSON, unprotected topic",
    "sasl_ssl_protect": "Sluice SASL_SSL+SCRAM-SHA-512, 1 KiB JSON, field protection "
                        "(mask, token, encrypt)",
    "sasl_plaintext": "Sluice SASL_PLAINTEXT+SCRAM-SHA-512",
    "gateway_direct": "Sluice SASL_SSL+SCRAM-SHA-512, gateway's upstream, direct",
    "gateway": "sluice gateway passthrough (SASL_SSL in, PLAINTEXT to the same broker)",
    "mock": "librdkafka mock cluster (ref.)",
    "nats": "NATS JetStream file+TLS (ref.)",
}
ORDER = ["plaintext", "idempotent", "txn100", "ssl", "sasl_ssl", "sasl_ssl_base", "sasl_ssl_iam", "sasl_ssl_audit_off",
         "sasl_ssl_enc_off",
         "sasl_ssl_json", "sasl_ssl_protect", "sasl_plaintext", "gateway_direct", "gateway", "mock",
         "nats"]


def fmt(v, nd=1):
    return "—" if v is None else f"{v:.{nd}f}"


def lat(lg):
    if not lg or "e2e_lat_us" not in lg or not lg["e2e_lat_us"]["n"]:
        return "—"
    h = lg["e2e_lat_us"]
    s = "/".join(f"{h[k] / 1000:.1f}" for k in ("p50", "p99", "p999", "max"))
    return s + ("" if lg.get("ok") else " (incomplete)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--machine", default="")
    ap.add_argument("--pinning", default="")
    ap.add_argument("--count", default="")
    ap.add_argument("--secs", default="")
    ap.add_argument("--elapsed", default="")
    ap.add_argument("--e2e-linger", default="default")
    a = ap.parse_args()
    rows = [json.loads(l) for l in open(a.results) if l.strip()]
    na = {r["row"]: r["reason"] for r in rows if r.get("phase") == "na"}
    aes = {(r["phase"], r["bytes"]): r for r in rows if r.get("row") == "openssl"}
    rows = [r for r in rows if r.get("row") != "openssl"]
    rss = {r["row"]: r.get("peak_rss_kb") for r in rows if r.get("phase") == "rss"}
    res = {}
    for r in rows:
        if r.get("phase") in ("na", "rss"):
            continue
        phase = r["phase"]
        if phase.startswith("pair") and phase[4:].isdigit():  # results before --pair-load
            phase = f"pair50-{phase[4:]}"
        res[(r["row"], r["partitions"], phase)] = r
    parts = sorted({k[1] for k in res})
    seen = [x for x in ORDER if x in na or any(k[0] == x for k in res)]
    seen += sorted({k[0] for k in res} - set(seen))

    def lg(row, p, phase):
        r = res.get((row, p, phase))
        return r["lg"] if r else None

    def mbs(row, p, phase, key):
        x = lg(row, p, phase)
        if not x or key not in x:
            return None
        return x[key]

    out = []
    json_rows = any(k[0] in ("sasl_ssl_json", "sasl_ssl_protect") for k in res)
    # run_matrix.sh --txn-count: the transactional row may run fewer records than the others.
    txn_n = ""
    tp = [lg("txn100", p, "produce") for p in parts]
    tp = {x.get("produced") for x in tp if x}
    if tp and str(max(tp)) != str(a.count):
        txn_n = f" (txn100: {max(tp)})"
    out.append(f"Machine: {a.machine}. Pinning: {a.pinning}. Messages: 1024 B incompressible"
               + (" (JSON rows: 1024 B JSON documents, sl_loadgen --json)" if json_rows else "")
               + ", "
               f"acks=all, {a.count} per throughput run{txn_n}, {a.secs} s per fixed-rate run "
               f"(producer linger.ms {a.e2e_linger}). "
               f"Matrix wall time: {a.elapsed} s.")
    out.append("")
    out.append("| system | partitions | produce MB/s (max) | consume MB/s catch-up | consume MB/s "
               "tailing | e2e ms p50/p99/p99.9/max @50% | e2e ms p50/p99/p99.9/max @80% | "
               "ack ms p99 @50% | broker CPU-s/GB produced | broker peak RSS MiB |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for row in seen:
        name = NAMES.get(row, row)
        if row in na:
            out.append(f"| {name} | — | {na[row]} | | | | | | | |")
            continue
        for p in parts:
            if not any(k[0] == row and k[1] == p for k in res):
                continue
            prod = lg(row, p, "produce")
            pmb = mbs(row, p, "produce", "produce_mb_per_s")
            if prod and not prod.get("ok"):
                pmb_s = fmt(pmb) + " (incomplete)"
            else:
                pmb_s = fmt(pmb)
            cpu = res.get((row, p, "produce"), {}).get("broker_cpu_s")
            gb = (prod["delivered"] * prod["size"] / 1e9) if prod and prod.get("delivered") else 0
            cpu_gb = cpu / gb if cpu is not None and gb else None
            catch = mbs(row, p, "catchup", "consume_mb_per_s")
            if row == "mock":
                catch_s = "n/a (mock: produce only)"
            else:
                c = lg(row, p, "catchup")
                catch_s = fmt(catch) + ("" if not c or c.get("ok") else " (incomplete)")
            tail = mbs(row, p, "tail", "consume_mb_per_s")
            tail_s = "n/a" if row == "mock" else fmt(tail)
            e50 = lg(row, p, "e2e50")
            ack = "—"
            if e50 and e50.get("ack_lat_us", {}).get("n"):
                ack = f"{e50['ack_lat_us']['p99'] / 1000:.1f}"
            rk = rss.get(row)
            out.append(f"| {name} | {p} | {pmb_s} | {catch_s} | {tail_s} | {lat(e50)} | "
                       f"{lat(lg(row, p, 'e2e80'))} | {ack} | {fmt(cpu_gb, 2)} | "
                       f"{fmt(rk / 1024 if rk else None, 0)} |")
    out.append("")

    # Ratios against the targets, from this run only (side by side on the same machine).
    out.append("| target | partitions | measured | met |")
    out.append("|---|---|---|---|")

    def ratio_line(label, num_row, den_row, goal):
        for p in parts:
            n = mbs(num_row, p, "produce", "produce_mb_per_s")
            d = mbs(den_row, p, "produce", "produce_mb_per_s")
            if n is None or d is None or not d:
                why = na.get(num_row) or na.get(den_row) or "not measured"
                out.append(f"| {label} | {p} | {why} | — |")
                continue
            r = n / d
            out.append(f"| {label} | {p} | {r:.2f}× ({n:.0f} / {d:.0f} MB/s) | "
                       f"{'yes' if r >= goal else 'no'} |")

    ratio_line("SASL_SSL ≥ 0.85× PLAINTEXT produce", "sasl_ssl", "plaintext", 0.85)
    for p in parts:
        cpu = res.get(("sasl_ssl", p, "produce"), {}).get("broker_cpu_s")
        prod = lg("sasl_ssl", p, "produce")
        if cpu is None or not prod or not prod.get("delivered"):
            out.append(f"| ≤ 1 broker CPU-s/GB over SASL_SSL | {p} | "
                       f"{na.get('sasl_ssl', 'not measured')} | — |")
        else:
            v = cpu / (prod["delivered"] * prod["size"] / 1e9)
            out.append(f"| ≤ 1 broker CPU-s/GB over SASL_SSL | {p} | {v:.2f} | "
                       f"{'yes' if v <= 1 else 'no'} |")
    for row in ("plaintext", "sasl_ssl"):
        for p in parts:
            e = lg(row, p, "e2e50")
            if not e or not e.get("e2e_lat_us", {}).get("n"):
                out.append(f"| p99 e2e ≤ 5 ms @50% ({row}) | {p} | "
                           f"{na.get(row, 'not measured')} | — |")
                continue
            v = e["e2e_lat_us"]["p99"] / 1000
            out.append(f"| p99 e2e ≤ 5 ms @50% ({row}) | {p} | {v:.1f} ms | "
                       f"{'yes' if v <= 5 and e.get('ok') else 'no'} |")
    # The audit trail's cost (issue 11): the same SASL_SSL row with the trail on (the default) and
    # off, in one run.
    ratio_line("audit trail on ≥ 0.95× off, SASL_SSL produce", "sasl_ssl", "sasl_ssl_audit_off",
               0.95)
    for p in parts:
        v = {}
        for row in ("sasl_ssl", "sasl_ssl_audit_off"):
            cpu = res.get((row, p, "produce"), {}).get("broker_cpu_s")
            prod = lg(row, p, "produce")
            if cpu is not None and prod and prod.get("delivered"):
                v[row] = cpu / (prod["delivered"] * prod["size"] / 1e9)
        if len(v) < 2:
            out.append(f"| audit trail ≤ +0.1 broker CPU-s/GB, SASL_SSL | {p} | not measured | — |")
            continue
        d = v["sasl_ssl"] - v["sasl_ssl_audit_off"]
        out.append(f"| audit trail ≤ +0.1 broker CPU-s/GB, SASL_SSL | {p} | {d:+.2f} "
                   f"({v['sasl_ssl']:.2f} on, {v['sasl_ssl_audit_off']:.2f} off) | "
                   f"{'yes' if d <= 0.1 else 'no'} |")
    # Encryption at rest's cost (issue 12): the same SASL_SSL row with encryption on (the default)
    # and off, in one run, against what AES-256-GCM itself costs here (openssl speed, same run).
    ratio_line("encryption at rest ≥ 0.85× off, SASL_SSL produce", "sasl_ssl", "sasl_ssl_enc_off",
               0.85)
    for p in parts:
        n = mbs("sasl_ssl", p, "catchup", "consume_mb_per_s")
        d = mbs("sasl_ssl_enc_off", p, "catchup", "consume_mb_per_s")
        if n is None or not d:
            out.append(f"| encryption at rest ≥ 0.75× off, catch-up consume | {p} | not measured | — |")
        else:
            out.append(f"| encryption at rest ≥ 0.75× off, catch-up consume | {p} | {n / d:.2f}× "
                       f"({n:.0f} / {d:.0f} MB/s) | {'yes' if n / d >= 0.75 else 'no'} |")
    enc = aes.get(("aes_encrypt", 1048576), {}).get("bytes_per_s")
    for p in parts:
        v = {}
        for row in ("sasl_ssl", "sasl_ssl_enc_off"):
            cpu = res.get((row, p, "produce"), {}).get("broker_cpu_s")
            prod = lg(row, p, "produce")
            if cpu is not None and prod and prod.get("delivered"):
                v[row] = cpu / (prod["delivered"] * prod["size"] / 1e9)
        if len(v) < 2 or not enc:
            out.append(f"| encryption at rest CPU-s/GB added ≤ 1.5× AES-256-GCM's | {p} | "
                       f"not measured | — |")
            continue
        d = v["sasl_ssl"] - v["sasl_ssl_enc_off"]
        aes_gb = 1e9 / enc
        out.append(f"| encryption at rest CPU-s/GB added ≤ 1.5× AES-256-GCM's | {p} | {d:+.2f} "
                   f"({v['sasl_ssl']:.2f} on, {v['sasl_ssl_enc_off']:.2f} off; AES-256-GCM "
                   f"{aes_gb:.2f} CPU-s/GB at 1 MiB: {enc / 1e9:.2f} GB/s) | "
                   f"{'yes' if d <= 1.5 * aes_gb else 'no'} |")
    for (phase, nbytes), r in sorted(aes.items()):
        if r.get("bytes_per_s"):
            out.append(f"| (openssl speed {phase[4:]}, {nbytes} B, {r['version']}) | — | "
                       f"{r['bytes_per_s'] / 1e9:.2f} GB/s | — |")
    # Field protection's cost (issue 13): the same 1 KiB JSON records on an unprotected topic and
    # on one with three protected fields (mask, token, encrypt), one broker, one run.
    if any(k[0] in ("sasl_ssl_protect", "sasl_ssl_json") for k in res) or \
            "sasl_ssl_protect" in na:
        ratio_line("field protection ≥ 0.5× unprotected, 1 KiB JSON, SASL_SSL produce",
                   "sasl_ssl_protect", "sasl_ssl_json", 0.5)
        for p in parts:
            n = mbs("sasl_ssl_protect", p, "catchup", "consume_mb_per_s")
            d = mbs("sasl_ssl_json", p, "catchup", "consume_mb_per_s")
            if n is None or not d:
                out.append(f"| (field protection, catch-up consume with reveal of 1 field) | {p} "
                           f"| not measured | — |")
            else:
                out.append(f"| (field protection, catch-up consume with reveal of 1 field) | {p} "
                           f"| {n / d:.2f}× ({n:.0f} / {d:.0f} MB/s) | — |")
    # A build from before a change, same row, same run (--base-bin): unchanged within noise.
    if any(k[0] == "sasl_ssl_base" for k in res) or "sasl_ssl_base" in na:
        for p in parts:
            n = mbs("sasl_ssl", p, "produce", "produce_mb_per_s")
            d = mbs("sasl_ssl_base", p, "produce", "produce_mb_per_s")
            # Faster is noise too, not a regression: only a slowdown fails.
            label = "SASL_SSL produce vs the base build (unchanged: ≥ 0.9×)"
            if n is None or not d:
                out.append(f"| {label} | {p} | {na.get('sasl_ssl_base', 'not measured')} | — |")
            else:
                r = n / d
                out.append(f"| {label} | {p} | {r:.2f}× ({n:.0f} / {d:.0f} MB/s) | "
                           f"{'yes' if r >= 0.9 else 'no'} |")
    # IAM's cost (issue 15): the sasl_ssl row with MSK IAM tokens and every request decided by an
    # IAM policy instead of ACLs, one run. No target in the issue: the ratios are recorded.
    if any(k[0] == "sasl_ssl_iam" for k in res) or "sasl_ssl_iam" in na:
        for p in parts:
            label = "(IAM / SCRAM, SASL_SSL: produce, p50 and p99 e2e @50%, CPU-s/GB)"
            n, d = lg("sasl_ssl_iam", p, "produce"), lg("sasl_ssl", p, "produce")
            ne, de = lg("sasl_ssl_iam", p, "e2e50"), lg("sasl_ssl", p, "e2e50")
            nc = res.get(("sasl_ssl_iam", p, "produce"), {}).get("broker_cpu_s")
            dc = res.get(("sasl_ssl", p, "produce"), {}).get("broker_cpu_s")
            if not n or not d or not d.get("produce_mb_per_s"):
                out.append(f"| {label} | {p} | {na.get('sasl_ssl_iam', 'not measured')} | — |")
                continue
            parts_s = [f"{n['produce_mb_per_s'] / d['produce_mb_per_s']:.2f}× produce"]
            if ne and de and ne.get("e2e_lat_us", {}).get("n") and de.get("e2e_lat_us", {}).get("n"):
                for q in ("p50", "p99"):
                    parts_s.append(f"{ne['e2e_lat_us'][q] / de['e2e_lat_us'][q]:.2f}× {q}")
            if nc is not None and dc and n.get("delivered") and d.get("delivered"):
                cgb = (nc / (n["delivered"] * n["size"])) / (dc / (d["delivered"] * d["size"]))
                parts_s.append(f"{cgb:.2f}× CPU-s/GB")
            out.append(f"| {label} | {p} | {', '.join(parts_s)} | — |")
    # Transactions' cost (issue 16): the plaintext broker with an idempotent producer and with a
    # transactional one committing every 100 records, one run. No target in the issue: recorded.
    if any(k[0] in ("idempotent", "txn100") for k in res) or "txn100" in na:
        for p in parts:
            label = "(transactional (100/txn) / idempotent produce: msgs/s, broker CPU-s/GB)"
            n, d = lg("txn100", p, "produce"), lg("idempotent", p, "produce")
            if not n or not d or not d.get("produce_msgs_per_s"):
                why = na.get("txn100") or na.get("idempotent") or "not measured"
                out.append(f"| {label} | {p} | {why} | — |")
                continue
            parts_s = [f"{n['produce_msgs_per_s'] / d['produce_msgs_per_s']:.2f}× msgs/s "
                       f"({n['produce_msgs_per_s']:.0f} / {d['produce_msgs_per_s']:.0f})"]
            nc = res.get(("txn100", p, "produce"), {}).get("broker_cpu_s")
            dc = res.get(("idempotent", p, "produce"), {}).get("broker_cpu_s")
            if nc is not None and dc and n.get("delivered") and d.get("delivered"):
                ng = nc / (n["delivered"] * n["size"] / 1e9)
                dg = dc / (d["delivered"] * d["size"] / 1e9)
                parts_s.append(f"{ng / dg:.2f}× CPU-s/GB ({ng:.2f} / {dg:.2f})")
            h = n.get("txn_commit_us") or {}
            if h.get("n"):
                parts_s.append(f"commit p50/p99 {h['p50'] / 1000:.1f}/{h['p99'] / 1000:.1f} ms "
                               f"over {n.get('txns')} transactions, "
                               f"{n.get('txns_aborted')} aborted")
            if not n.get("ok"):
                parts_s.append("incomplete")
            out.append(f"| {label} | {p} | {', '.join(parts_s)} | — |")
    # The gateway's cost (issue 14): the same clients direct to one broker and through the
    # gateway in front of it, one run.
    if any(k[0] in ("gateway", "gateway_direct") for k in res) or "gateway" in na:
        ratio_line("gateway passthrough ≥ 0.8× direct SASL_SSL produce", "gateway",
                   "gateway_direct", 0.8)
        for p in parts:
            g, d = lg("gateway", p, "e2e50"), lg("gateway_direct", p, "e2e50")
            label = "gateway adds ≤ 0.2 ms p50 e2e @50%"
            if not g or not d or not g.get("e2e_lat_us", {}).get("n") or \
                    not d.get("e2e_lat_us", {}).get("n"):
                out.append(f"| {label} | {p} | {na.get('gateway', 'not measured')} | — |")
                continue
            add = (g["e2e_lat_us"]["p50"] - d["e2e_lat_us"]["p50"]) / 1000
            out.append(f"| {label} | {p} | {add:+.2f} ms ({g['e2e_lat_us']['p50'] / 1000:.2f} vs "
                       f"{d['e2e_lat_us']['p50'] / 1000:.2f}) | "
                       f"{'yes' if add <= 0.2 and g.get('ok') else 'no'} |")
        # Paired runs (run_matrix.sh, run_gateway_pairs): the median of the ratios, and of the
        # differences, of neighbouring runs, which cancels the drift (disk writeback, the
        # group-commit fsync) that moves a lone run by far more than what is measured.
        for p in parts:
            ratios, n = [], 0
            while True:
                g = mbs("gateway", p, f"tput-{n + 1}", "produce_mb_per_s")
                d = mbs("gateway_direct", p, f"tput-{n + 1}", "produce_mb_per_s")
                if g is None and d is None:
                    break
                n += 1
                if g and d:
                    ratios.append(g / d)
            if n:
                label = "gateway passthrough ≥ 0.8× direct SASL_SSL produce, paired"
                if not ratios:
                    out.append(f"| {label} | {p} | no complete pair of {n} | — |")
                else:
                    med = statistics.median(ratios)
                    out.append(f"| {label} | {p} | {med:.2f}× median of {len(ratios)} "
                               f"(each: {', '.join(f'{x:.2f}' for x in ratios)}) | "
                               f"{'yes' if med >= 0.8 and len(ratios) == n else 'no'} |")
        for p in parts:
            loads = sorted({int(k[2][4:].split("-")[0]) for k in res
                            if k[0] == "gateway" and k[1] == p and k[2].startswith("pair")})
            for pct in loads:
                diffs, n = [], 0
                while True:
                    ph = f"pair{pct}-{n + 1}"
                    g, d = lg("gateway", p, ph), lg("gateway_direct", p, ph)
                    if not g or not d:
                        break
                    n += 1
                    if g.get("ok") and d.get("ok") and g.get("e2e_lat_us", {}).get("n") and \
                            d.get("e2e_lat_us", {}).get("n"):
                        diffs.append((g["e2e_lat_us"]["p50"] - d["e2e_lat_us"]["p50"]) / 1000)
                label = f"gateway adds ≤ 0.2 ms p50 e2e @{pct}%, paired"
                if not diffs:
                    out.append(f"| {label} | {p} | no complete pair of {n} | — |")
                    continue
                med = statistics.median(diffs)
                out.append(f"| {label} | {p} | {med:+.2f} ms median of {len(diffs)} "
                           f"(each: {', '.join(f'{x:+.2f}' for x in diffs)}) | "
                           f"{'yes' if med <= 0.2 and len(diffs) == n else 'no'} |")
    ratio_line("SASL_SSL ≥ 2× NATS JetStream TLS publish", "sasl_ssl", "nats", 2.0)
    ratio_line("PLAINTEXT ≥ 0.5× mock cluster produce", "plaintext", "mock", 0.5)
    ratio_line("SASL_SSL ≥ 0.5× mock cluster produce", "sasl_ssl", "mock", 0.5)
    print("\n".join(out))


if __name__ == "__main__":
    main()
