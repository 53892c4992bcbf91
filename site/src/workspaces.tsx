import { useEffect, useState } from "preact/hooks";
import { api } from "./api";
import { appLink, capitalize, connectionLabel, relativeTime, startupLabel } from "./format";
import { terminalHref } from "./routes";
import {
  AgentConnected,
  ShareAuthenticated,
  ShareOwner,
  SharePublic,
  type BuildInfo,
  type StartupScriptResult,
  type StartupScriptStatus,
  type Workspace,
  type WorkspaceApp,
} from "./tether.gen";
import { Badge, ErrorBox, usePoll, type Tone } from "./ui";

const pollInterval = 3000;

export function WorkspacesPage() {
  const [list, setList] = useState<Workspace[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [build, setBuild] = useState<BuildInfo | null>(null);
  const [now, setNow] = useState(Date.now());

  useEffect(() => {
    document.title = "Workspaces — Tether";
    api.buildInfo().then(setBuild, () => {});
  }, []);

  usePoll(async (signal) => {
    try {
      const ws = (await api.workspaces(signal)) ?? [];
      ws.sort((a, b) => a.owner.localeCompare(b.owner) || a.name.localeCompare(b.name));
      setList(ws);
      setError(null);
    } catch (err) {
      if (!signal.aborted) setError(err);
    }
    setNow(Date.now());
  }, pollInterval);

  return (
    <>
      <div class="page-head">
        <h1>Workspaces</h1>
        {list && (
          <span class="muted">
            {list.filter((w) => w.agent_status === AgentConnected).length} of {list.length} connected
          </span>
        )}
      </div>
      {error !== null && (
        <ErrorBox
          error={error}
          title={list ? "Could not refresh; showing the last known state." : "Could not load workspaces."}
        />
      )}
      {list === null && error === null && <p class="muted">Loading…</p>}
      {list !== null && list.length === 0 && (
        <div class="card empty">
          <h2>No workspaces yet</h2>
          <p>
            Create one with <code>tether create NAME</code>, then run the agent it prints inside the
            workspace.
          </p>
        </div>
      )}
      {list !== null && list.length > 0 && (
        <div class="card table-card">
          <table class="ws-table">
            <thead>
              <tr>
                <th>Workspace</th>
                <th>Status</th>
                <th>Connection</th>
                <th>Apps</th>
                <th>
                  <span class="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {list.map((w) => (
                <WorkspaceRow key={w.id} ws={w} now={now} wildcard={build?.wildcard_access_url} />
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}

function WorkspaceRow({ ws, now, wildcard }: { ws: Workspace; now: number; wildcard?: string }) {
  const connected = ws.agent_status === AgentConnected;
  const conn = connectionLabel(ws.connection);
  const apps = ws.apps ?? [];
  return (
    <tr class="ws-row" data-workspace={`${ws.owner}/${ws.name}`}>
      <td data-label="Workspace">
        <div class="ws-name">
          <span class="ws-owner">{ws.owner}/</span>
          {ws.name}
        </div>
        <div class="ws-meta muted">
          {[ws.template, connected ? ws.agent_ip : "", ws.agent_version].filter(Boolean).join(" · ")}
        </div>
      </td>
      <td data-label="Status">
        <Badge tone={connected ? "ok" : "neutral"}>{connected ? "Connected" : "Disconnected"}</Badge>
        <div class="muted small" title={ws.last_seen ? new Date(ws.last_seen).toLocaleString() : undefined}>
          Last seen {relativeTime(ws.last_seen, now)}
        </div>
        {ws.startup_script && <StartupScript ws={ws} st={ws.startup_script} />}
      </td>
      <td data-label="Connection">
        {conn ? (
          <span class="conn" title={ws.connection?.endpoint}>
            {conn}
          </span>
        ) : (
          <span class="muted">—</span>
        )}
      </td>
      <td data-label="Apps">
        {apps.length === 0 ? (
          <span class="muted">—</span>
        ) : (
          <ul class="apps">
            {apps.map((a) => (
              <AppItem key={a.name} ws={ws} app={a} wildcard={wildcard} />
            ))}
          </ul>
        )}
      </td>
      <td class="actions">
        <a
          class="button"
          href={terminalHref(ws.owner, ws.name)}
          target="_blank"
          rel="noopener"
          title={connected ? "Open a terminal in a new tab" : "The agent is not connected; the terminal will wait for it"}
        >
          Terminal
        </a>
      </td>
    </tr>
  );
}

const healthTone: Record<string, Tone> = {
  healthy: "ok",
  unhealthy: "error",
  initializing: "warning",
  disabled: "neutral",
};

function AppItem({ ws, app, wildcard }: { ws: Workspace; app: WorkspaceApp; wildcard?: string }) {
  const link = appLink(ws, app, wildcard);
  const share = app.share && app.share !== ShareOwner ? ` · shared: ${app.share}` : "";
  // "disabled" means the app has no health check: nothing to report, and a
  // grey "Disabled" badge would read as "this app is switched off".
  const health = app.health && app.health !== "disabled" ? (
    <Badge tone={healthTone[app.health] ?? "neutral"} title={`Health: ${app.health}`}>
      {capitalize(app.health)}
    </Badge>
  ) : null;
  if (!link.href) {
    return (
      <li class="app app-unavailable">
        <span class="app-link" title={link.reason} aria-disabled="true">
          {app.name}
        </span>
        <span class="muted small">unavailable</span>
        {health}
      </li>
    );
  }
  return (
    <li class="app">
      <a
        class="app-link"
        href={link.href}
        target="_blank"
        rel="noopener"
        title={`${app.subdomain ? "Subdomain" : "Path"} app${share}`}
      >
        {app.name}
      </a>
      {app.share === SharePublic && <span class="share" title="Anyone can open this app, without signing in">public</span>}
      {app.share === ShareAuthenticated && <span class="share" title="Any signed-in user can open this app">shared</span>}
      {health}
    </li>
  );
}

/**
 * StartupScript is the badge of a workspace's startup script; opening it
 * shows the end of the script's output, fetched when opened and again as
 * the status changes while it stays open.
 */
function StartupScript({ ws, st }: { ws: Workspace; st: StartupScriptStatus }) {
  const [open, setOpen] = useState(false);
  const [result, setResult] = useState<StartupScriptResult | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    if (!open) return;
    let live = true;
    api.startupScript(ws.owner, ws.name).then(
      (r) => live && (setResult(r), setError(null)),
      (err) => live && setError(err),
    );
    return () => {
      live = false;
    };
  }, [open, ws.owner, ws.name, st.status, st.finished_at]);
  const label = startupLabel(st);
  return (
    <details class="startup" onToggle={(e) => setOpen((e.currentTarget as HTMLDetailsElement).open)}>
      <summary title="The template's startup script: show its output">
        <Badge tone={label.tone}>{label.text}</Badge>
      </summary>
      {error !== null && <ErrorBox error={error} title="Could not load the startup script's output." />}
      {error === null && result === null && <p class="muted small">Loading…</p>}
      {result !== null && (
        <>
          <pre class="startup-output" tabIndex={0} aria-label="Startup script output">
            {result.output_truncated ? "…\n" : ""}
            {result.output || "(no output)"}
          </pre>
          {result.log_path && (
            <p class="muted small">
              All of it is in <code>{result.log_path}</code> in the workspace.
            </p>
          )}
        </>
      )}
    </details>
  );
}
