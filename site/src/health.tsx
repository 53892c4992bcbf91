import { useEffect, useState } from "preact/hooks";
import { api } from "./api";
import type { DERPRegionHealth, HealthCheck, HealthReport } from "./tether.gen";
import { Badge, ErrorBox, TableCard, severityTone, usePoll } from "./ui";

// The health check runs probes on the server; a slow refresh is enough.
const pollInterval = 30_000;

const checkTitles: Record<string, string> = {
  access_url: "Access URL",
  websocket: "WebSocket",
  derp: "DERP relays",
  stun: "STUN",
  store: "Database",
  database: "Database",
  workspace_proxies: "Workspace proxies",
  wsproxy: "Workspace proxies",
};

export function checkTitle(name: string): string {
  if (checkTitles[name]) return checkTitles[name];
  const s = name.replace(/[_-]+/g, " ").trim();
  return s ? s[0].toUpperCase() + s.slice(1) : name;
}

const rank: Record<string, number> = { error: 0, warning: 1, ok: 2 };

const summaries: Record<string, string> = {
  ok: "Everything is healthy",
  warning: "Working, with warnings",
  error: "Problems need attention",
};

export function HealthPage() {
  const [report, setReport] = useState<HealthReport | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [checkedAt, setCheckedAt] = useState<Date | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    document.title = "Health — Tether";
  }, []);

  const refresh = usePoll(async (signal) => {
    setBusy(true);
    try {
      setReport(await api.health(signal));
      setError(null);
      setCheckedAt(new Date());
    } catch (err) {
      if (!signal.aborted) setError(err);
    } finally {
      setBusy(false);
    }
  }, pollInterval);

  const severity = report ? report.severity || (report.healthy ? "ok" : "error") : "";
  const checks = [...(report?.checks ?? [])].sort(
    (a, b) => (rank[a.severity] ?? 3) - (rank[b.severity] ?? 3) || a.name.localeCompare(b.name),
  );
  const regions = report?.derp_regions ?? [];

  return (
    <>
      <div class="page-head">
        <h1>Deployment health</h1>
        <span class="muted">{checkedAt && `Checked at ${checkedAt.toLocaleTimeString()}`}</span>
        <button class="button" type="button" onClick={refresh} disabled={busy}>
          {busy ? "Checking…" : "Check again"}
        </button>
      </div>
      {error !== null && <ErrorBox error={error} title="Could not get the health report." />}
      {report === null && error === null && <p class="muted">Running checks…</p>}
      {report && (
        <>
          <div class={`summary summary-${severityTone(severity)}`} role="status">
            <span class="summary-icon" aria-hidden="true">
              {severity === "ok" ? "✓" : "!"}
            </span>
            <div>
              <strong>{summaries[severity] ?? `Status: ${severity}`}</strong>
              <div class="small">
                {plural(countBy(checks, "error"), "error")}, {plural(countBy(checks, "warning"), "warning")},{" "}
                {countBy(checks, "ok")} of {plural(checks.length, "check")} passing
              </div>
            </div>
          </div>
          <section class="checks">
            {checks.map((c) => (
              <CheckCard key={c.name} check={c} />
            ))}
          </section>
          {regions.length > 0 && <Regions regions={regions} />}
        </>
      )}
    </>
  );
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function countBy(checks: HealthCheck[], severity: string): number {
  return checks.filter((c) => c.severity === severity).length;
}

function CheckCard({ check }: { check: HealthCheck }) {
  const hasDetails = check.details !== undefined && check.details !== null;
  return (
    <article class={`card check check-${severityTone(check.severity)}`} data-check={check.name}>
      <header>
        <h2>{checkTitle(check.name)}</h2>
        <Badge tone={severityTone(check.severity)}>{check.severity}</Badge>
      </header>
      <p class="check-message">{check.message || (check.severity === "ok" ? "No problems found." : "")}</p>
      {hasDetails && (
        <details>
          <summary>Details</summary>
          <Details value={check.details} />
        </details>
      )}
    </article>
  );
}

// Details shows an object as a list of its fields and anything else as
// formatted JSON; nested values stay JSON so nothing is hidden.
function Details({ value }: { value: unknown }) {
  if (value && typeof value === "object" && !Array.isArray(value)) {
    return (
      <dl class="details">
        {Object.entries(value as Record<string, unknown>).map(([k, v]) => (
          <div key={k}>
            <dt>{k}</dt>
            <dd>{typeof v === "string" ? v : <code>{JSON.stringify(v, null, 2)}</code>}</dd>
          </div>
        ))}
      </dl>
    );
  }
  return <pre class="details">{JSON.stringify(value, null, 2)}</pre>;
}

function Regions({ regions }: { regions: DERPRegionHealth[] }) {
  const sorted = [...regions].sort((a, b) => a.region_id - b.region_id);
  return (
    <section>
      <h2 class="section-title">DERP regions</h2>
      <TableCard columns={["Region", "Status", "Latency", "Message"]} tableClass="regions">
        {sorted.map((r) => (
          <tr key={r.region_id} data-region={r.code}>
            <td data-label="Region">
              <strong>{r.name || r.code}</strong>
              <div class="muted small">
                {r.code} · id {r.region_id}
              </div>
            </td>
            <td data-label="Status">
              <Badge tone={severityTone(r.severity)}>{r.severity}</Badge>
            </td>
            <td data-label="Latency">{typeof r.latency_ms === "number" ? `${r.latency_ms.toFixed(1)} ms` : "—"}</td>
            <td data-label="Message">{r.message}</td>
          </tr>
        ))}
      </TableCard>
    </section>
  );
}
