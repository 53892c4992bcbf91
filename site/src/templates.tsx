import { useEffect, useState } from "preact/hooks";
import { api } from "./api";
import { formatDate } from "./format";
import type { Template, User } from "./tether.gen";
import { Dialog, DialogForm, ErrorBox, TableCard, useAction } from "./ui";

const example = `name: python-dev
agent_url: https://tether.internal.example.com   # optional
apps:
  - name: web
    url: http://127.0.0.1:8080
    subdomain: false
    share: owner             # owner | authenticated | public
    healthcheck: {url: http://127.0.0.1:8080/healthz, interval: 5s}
`;

/** TemplatesPage lists templates; admins upload new ones (or replace one
 * of the same name) as the YAML that `tether templates push` takes. */
export function TemplatesPage({ me }: { me: User | null }) {
  const [list, setList] = useState<Template[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [uploading, setUploading] = useState(false);
  const load = () =>
    api.templates().then(
      (ts) => {
        setList(ts ?? []);
        setError(null);
      },
      (err) => setError(err),
    );
  useEffect(() => {
    document.title = "Templates — Tether";
    void load();
  }, []);
  const admin = me?.role === "admin";
  return (
    <>
      <div class="page-head">
        <h1>Templates</h1>
        {list && <span class="muted">{list.length === 1 ? "1 template" : `${list.length} templates`}</span>}
        {admin && (
          <button class="button button-primary" type="button" onClick={() => setUploading(true)}>
            Upload template
          </button>
        )}
      </div>
      <Dialog open={uploading} title="Upload a template" onClose={() => setUploading(false)} wide>
        <UploadForm
          onClose={() => setUploading(false)}
          onDone={() => {
            setUploading(false);
            void load();
          }}
        />
      </Dialog>
      {error !== null && <ErrorBox error={error} title="Could not load templates." />}
      {list === null && error === null && <p class="muted">Loading…</p>}
      {list !== null && list.length === 0 && (
        <div class="card empty">
          <h2>No templates yet</h2>
          <p>
            {admin ? (
              <>
                Upload one with <strong>Upload template</strong>, or <code>tether templates push -f FILE.yaml</code>.
              </>
            ) : (
              "An admin adds templates; workspaces can be created without one."
            )}
          </p>
        </div>
      )}
      {list !== null && list.length > 0 && (
        <TableCard columns={["Template", "Agent URL", "Apps", "Updated"]}>
          {list.map((t) => (
            <tr key={t.id} data-template={t.name}>
              <td data-label="Template" class="ws-name">
                {t.name}
              </td>
              <td data-label="Agent URL">{t.agent_url || <span class="muted">the access URL</span>}</td>
              <td data-label="Apps">
                {(t.apps ?? []).length === 0 ? (
                  <span class="muted">—</span>
                ) : (
                  (t.apps ?? []).map((a) => (
                    <div key={a.name}>
                      {a.name} <span class="muted small">{a.url} · {a.subdomain ? "subdomain" : "path"} · {a.share}</span>
                    </div>
                  ))
                )}
              </td>
              <td data-label="Updated" class="muted">
                {formatDate(t.updated_at)}
              </td>
            </tr>
          ))}
        </TableCard>
      )}
    </>
  );
}

function UploadForm({ onClose, onDone }: { onClose: () => void; onDone: () => void }) {
  const [text, setText] = useState("");
  const [busy, error, run] = useAction();
  const onFile = async (e: Event) => {
    const f = (e.currentTarget as HTMLInputElement).files?.[0];
    if (f) setText(await f.text());
  };
  const submit = () =>
    run(async () => {
      await api.pushTemplate(text);
      onDone();
    });
  return (
    <DialogForm
      label="Upload template"
      busyLabel="Uploading…"
      busy={busy}
      disabled={!text.trim()}
      onSubmit={submit}
      onCancel={onClose}
    >
      <p class="muted small">
        A template with the name of an existing one replaces it. The server checks the file and names the
        line of any mistake.
      </p>
      {error !== null && <ErrorBox error={error} title="The template was not saved." />}
      <label>
        Template file (YAML)
        <textarea
          name="template"
          class="code-input"
          rows={12}
          required
          autofocus
          spellcheck={false}
          placeholder={example}
          value={text}
          onInput={(e) => setText(e.currentTarget.value)}
        />
      </label>
      <label>
        Or read it from a file
        <input type="file" accept=".yaml,.yml,text/yaml,application/yaml" onChange={onFile} />
      </label>
    </DialogForm>
  );
}
