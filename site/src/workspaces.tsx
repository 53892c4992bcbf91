import { useEffect, useState } from "preact/hooks";
import { api } from "./api";
import { agentCommand, appLink, capitalize, connectionLabel, relativeTime, startupLabel, terminalsLabel } from "./format";
import { measureLatency, pickRegion, regionChoiceKey, regionURL } from "./regions";
import { terminalHref } from "./routes";
import {
  AgentConnected,
  ShareAuthenticated,
  ShareOwner,
  SharePublic,
  type BuildInfo,
  type StartupScriptResult,
  type StartupScriptStatus,
  type CreateWorkspaceResponse,
  type Template,
  type Region,
  type Workspace,
  type WorkspaceApp,
} from "./tether.gen";
import { Badge, Dialog, DialogConfirm, DialogForm, ErrorBox, Secret, TableCard, useAction, useFocusOnMount, usePoll, type Tone } from "./ui";

const pollInterval = 3000;
// Regions come and go (a proxy that stops heartbeating is no longer
// offered), and latencies drift: both are measured again this often.
const regionPollInterval = 15_000;

function savedRegion(): string | null {
  try {
    return localStorage.getItem(regionChoiceKey);
  } catch {
    return null;
  }
}

/** useRegions lists the regions, measures the browser's latency to each,
 * and picks the one terminals and apps open on. */
function useRegions() {
  const [regions, setRegions] = useState<Region[]>([]);
  const [latency, setLatency] = useState<Map<string, number>>(new Map());
  const [saved, setSaved] = useState<string | null>(savedRegion());
  usePoll(async (signal) => {
    const rs = (await api.regions(signal)) ?? [];
    setRegions(rs);
    const lat = new Map<string, number>();
    await Promise.all(
      rs.map(async (r) => {
        // The primary is measured where this page reached it.
        const ms = await measureLatency(r.primary ? location.origin : r.url);
        if (ms !== undefined) lat.set(r.name, ms);
      }),
    );
    if (!signal.aborted) setLatency(lat);
  }, regionPollInterval);
  const choose = (name: string | null) => {
    try {
      if (name) localStorage.setItem(regionChoiceKey, name);
      else localStorage.removeItem(regionChoiceKey);
    } catch {
      // Storage disabled: the choice lasts as long as the page.
    }
    setSaved(name);
  };
  return { regions, latency, saved, chosen: pickRegion(regions, latency, saved), choose };
}

function latencyLabel(ms: number | undefined): string {
  return ms === undefined ? "not reachable" : `${Math.round(ms)} ms`;
}

function RegionPicker({ r }: { r: ReturnType<typeof useRegions> }) {
  if (r.regions.length < 2) return null;
  const auto = pickRegion(r.regions, r.latency, null);
  return (
    <label class="region-picker" data-region={r.chosen?.name ?? ""}>
      <span class="muted">Open terminals and apps on</span>{" "}
      <select id="region-select" value={r.saved ?? ""} onChange={(e) => r.choose((e.target as HTMLSelectElement).value || null)}>
        <option value="">
          Lowest latency{auto ? ` (${auto.display_name}, ${latencyLabel(r.latency.get(auto.name))})` : ""}
        </option>
        {r.regions.map((g) => (
          <option key={g.name} value={g.name} data-latency={r.latency.get(g.name) ?? ""}>
            {g.icon ? g.icon + " " : ""}
            {g.display_name} — {latencyLabel(r.latency.get(g.name))}
          </option>
        ))}
      </select>
    </label>
  );
}

export function WorkspacesPage() {
  const [list, setList] = useState<Workspace[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [build, setBuild] = useState<BuildInfo | null>(null);
  const [now, setNow] = useState(Date.now());
  const [creating, setCreating] = useState(false);
  const [deleting, setDeleting] = useState<Workspace | null>(null);
  const regions = useRegions();

  useEffect(() => {
    document.title = "Workspaces — Tether";
    api.buildInfo().then(setBuild, () => {});
  }, []);

  const refresh = usePoll(async (signal) => {
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
        <RegionPicker r={regions} />
        <button class="button button-primary" type="button" onClick={() => setCreating(true)}>
          New workspace
        </button>
      </div>
      <CreateWorkspaceDialog
        open={creating}
        onClose={() => setCreating(false)}
        onCreated={refresh}
      />
      <DeleteWorkspaceDialog
        ws={deleting}
        onClose={() => setDeleting(null)}
        onDeleted={() => {
          setList((l) => l && l.filter((w) => w.id !== deleting?.id));
          refresh();
        }}
      />
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
            Create one with <strong>New workspace</strong> (or <code>tether create NAME</code>), then run
            the agent command it shows inside the workspace.
          </p>
        </div>
      )}
      {list !== null && list.length > 0 && (
        <TableCard columns={["Workspace", "Status", "Connection", "Apps"]} actions tableClass="ws-table">
          {list.map((w) => (
            <WorkspaceRow
              key={w.id}
              ws={w}
              now={now}
              wildcard={build?.wildcard_access_url}
              region={regions.chosen}
              onDelete={() => setDeleting(w)}
            />
          ))}
        </TableCard>
      )}
    </>
  );
}

function WorkspaceRow({
  ws,
  now,
  wildcard,
  region,
  onDelete,
}: {
  ws: Workspace;
  now: number;
  wildcard?: string;
  region?: Region;
  onDelete: () => void;
}) {
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
        {ws.web_terminals && (
          <div class="muted small terminals" data-direct={ws.web_terminals.direct} data-relayed={ws.web_terminals.relayed}>
            {terminalsLabel(ws.web_terminals)}
          </div>
        )}
      </td>
      <td data-label="Apps">
        {apps.length === 0 ? (
          <span class="muted">—</span>
        ) : (
          <ul class="apps">
            {apps.map((a) => (
              <AppItem key={a.name} ws={ws} app={a} wildcard={wildcard} region={region} />
            ))}
          </ul>
        )}
      </td>
      <td class="actions">
        <a
          class="button"
          href={regionURL(region, terminalHref(ws.owner, ws.name))}
          target="_blank"
          rel="noopener"
          title={connected ? "Open a terminal in a new tab" : "The agent is not connected; the terminal will wait for it"}
        >
          Terminal
        </a>
        <button
          class="button button-danger-quiet"
          type="button"
          onClick={onDelete}
          aria-label={`Delete workspace ${ws.owner}/${ws.name}`}
        >
          Delete
        </button>
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

function AppItem({ ws, app, wildcard, region }: { ws: Workspace; app: WorkspaceApp; wildcard?: string; region?: Region }) {
  // On a proxy: path apps at its origin, subdomain apps under its own
  // wildcard (or the primary's, if it has none).
  const onProxy = region && !region.primary;
  const link = appLink(ws, app, onProxy && region.wildcard_url ? region.wildcard_url : wildcard, onProxy ? regionURL(region, "") : "");
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

/** CreateWorkspaceDialog asks for a name and a template, then shows the
 * command that starts the new workspace's agent: its token is shown only
 * this once. */
function CreateWorkspaceDialog({
  open,
  onClose,
  onCreated,
}: {
  open: boolean;
  onClose: () => void;
  onCreated: () => void;
}) {
  return (
    <Dialog open={open} title="New workspace" onClose={onClose}>
      <CreateWorkspaceForm onClose={onClose} onCreated={onCreated} />
    </Dialog>
  );
}

function CreateWorkspaceForm({ onClose, onCreated }: { onClose: () => void; onCreated: () => void }) {
  const [name, setName] = useState("");
  const [template, setTemplate] = useState("");
  const [templates, setTemplates] = useState<Template[] | null>(null);
  const [created, setCreated] = useState<CreateWorkspaceResponse | null>(null);
  const [busy, error, run] = useAction();
  useEffect(() => {
    api.templates().then((ts) => setTemplates(ts ?? []), () => setTemplates([]));
  }, []);

  if (created) return <WorkspaceCreated created={created} onClose={onClose} />;
  const submit = () =>
    run(async () => {
      const resp = await api.createWorkspace({ name: name.trim(), template: template || undefined });
      setCreated(resp);
      onCreated();
    });
  return (
    <DialogForm label="Create workspace" busyLabel="Creating…" busy={busy} onSubmit={submit} onCancel={onClose}>
      {error !== null && <ErrorBox error={error} />}
      <label>
        Name
        <input
          name="name"
          required
          autofocus
          autocomplete="off"
          autocapitalize="none"
          spellcheck={false}
          pattern="[a-z]([a-z0-9\-]*[a-z0-9])?"
          maxLength={20}
          title="Lowercase letters, digits and hyphens, starting with a letter"
          value={name}
          onInput={(e) => setName(e.currentTarget.value)}
        />
        <span class="hint">Lowercase letters, digits and hyphens; at most 20.</span>
      </label>
      <label>
        Template
        <select name="template" value={template} onChange={(e) => setTemplate(e.currentTarget.value)}>
          <option value="">No template</option>
          {(templates ?? []).map((t) => (
            <option key={t.id} value={t.name}>
              {t.name}
            </option>
          ))}
        </select>
      </label>
    </DialogForm>
  );
}

/** WorkspaceCreated shows how to start the new workspace's agent. */
function WorkspaceCreated({ created, onClose }: { created: CreateWorkspaceResponse; onClose: () => void }) {
  const done = useFocusOnMount<HTMLButtonElement>();
  const ws = created.workspace;
  return (
    <div class="dialog-body" data-testid="workspace-created">
      <p>
        Workspace <strong>{ws.name}</strong> is ready for its agent. Run this inside the workspace
        (the machine, VM or container it stands for):
      </p>
      <Secret value={agentCommand(created)} label="Agent command" />
      <p class="muted small">
        The command holds the workspace's agent token, which is shown only this once. Once the agent
        connects, the workspace shows as connected; then open its terminal, or{" "}
        <code>tether ssh {ws.name}</code>.
      </p>
      <div class="dialog-actions">
        <button class="button button-primary" type="button" onClick={onClose} ref={done}>
          Done
        </button>
      </div>
    </div>
  );
}

/** DeleteWorkspaceDialog confirms a deletion: the agent's token stops
 * working and the workspace's sessions end. */
function DeleteWorkspaceDialog({
  ws,
  onClose,
  onDeleted,
}: {
  ws: Workspace | null;
  onClose: () => void;
  onDeleted: () => void;
}) {
  const [busy, error, run] = useAction();
  const del = () =>
    run(async () => {
      if (!ws) return;
      await api.deleteWorkspace(ws.owner, ws.name);
      onDeleted();
      onClose();
    });
  return (
    <Dialog open={ws !== null} title="Delete workspace?" onClose={onClose}>
      {ws && (
        <DialogConfirm label="Delete workspace" busyLabel="Deleting…" busy={busy} onConfirm={del} onCancel={onClose}>
          {error !== null && <ErrorBox error={error} />}
          <p>
            Delete <strong>{ws.owner}/{ws.name}</strong>? Its agent's token stops working and its open
            terminals and tunnels end. This cannot be undone.
          </p>
        </DialogConfirm>
      )}
    </Dialog>
  );
}
