import { useEffect, useState } from "preact/hooks";
import { api } from "./api";
import { formatDate, relativeTime } from "./format";
import type { APIToken, CreateAPITokenResponse, User } from "./tether.gen";
import { Badge, Dialog, DialogConfirm, ErrorBox, Secret, TableCard, navigate, useAction } from "./ui";

const lifetimes = [
  { label: "7 days", value: "168h" },
  { label: "30 days", value: "720h" },
  { label: "90 days", value: "2160h" },
  { label: "1 year", value: "8760h" },
];

/** AccountPage is the signed-in user's own: password, signing out
 * everywhere, and API tokens for scripts and CI. */
export function AccountPage({ me }: { me: User | null }) {
  useEffect(() => {
    document.title = "Account — Tether";
  }, []);
  return (
    <>
      <div class="page-head">
        <h1>Account</h1>
        {me && (
          <span class="muted">
            {me.username} · {me.email} · {me.role}
          </span>
        )}
      </div>
      <div class="account-grid">
        <PasswordCard me={me} />
        <SessionsCard />
      </div>
      <TokensCard />
    </>
  );
}

function PasswordCard({ me }: { me: User | null }) {
  const [oldPassword, setOld] = useState("");
  const [password, setPassword] = useState("");
  const [confirm, setConfirm] = useState("");
  const [done, setDone] = useState(false);
  const [busy, error, run] = useAction();
  const mismatch = confirm !== "" && confirm !== password;
  const submit = (e: Event) => {
    e.preventDefault();
    if (mismatch) return;
    setDone(false);
    void run(async () => {
      await api.setPassword("me", { old_password: oldPassword, password });
      setOld("");
      setPassword("");
      setConfirm("");
      setDone(true);
    });
  };
  return (
    <form class="card panel" onSubmit={submit} aria-labelledby="password-title">
      <h2 id="password-title">Change password</h2>
      {done && (
        <div class="alert alert-info" role="status">
          Your password was changed. Your other sessions have ended; this one stays.
        </div>
      )}
      {error !== null && <ErrorBox error={error} />}
      <input type="text" name="username" autocomplete="username" value={me?.username ?? ""} hidden readOnly />
      <label>
        Current password
        <input
          name="old_password"
          type="password"
          required
          autocomplete="current-password"
          value={oldPassword}
          onInput={(e) => setOld(e.currentTarget.value)}
        />
      </label>
      <label>
        New password
        <input
          name="new_password"
          type="password"
          required
          minLength={8}
          autocomplete="new-password"
          value={password}
          onInput={(e) => setPassword(e.currentTarget.value)}
        />
        <span class="hint">At least 8 characters; long passphrases welcome; not a common one.</span>
      </label>
      <label>
        New password again
        <input
          name="confirm_password"
          type="password"
          required
          autocomplete="new-password"
          aria-invalid={mismatch}
          aria-describedby={mismatch ? "confirm-mismatch" : undefined}
          value={confirm}
          onInput={(e) => setConfirm(e.currentTarget.value)}
        />
        {mismatch && (
          <span class="hint hint-error" id="confirm-mismatch">
            The two new passwords differ.
          </span>
        )}
      </label>
      <div>
        <button class="button button-primary" type="submit" disabled={busy || mismatch}>
          {busy ? "Changing…" : "Change password"}
        </button>
      </div>
    </form>
  );
}

function SessionsCard() {
  const [confirming, setConfirming] = useState(false);
  const [busy, error, run] = useAction();
  const signOutAll = () =>
    run(async () => {
      await api.endSessions("me");
      navigate("/login", true);
    });
  return (
    <section class="card panel" aria-labelledby="sessions-title">
      <h2 id="sessions-title">Sessions</h2>
      <p class="muted">
        Sign out of every browser and CLI where you are signed in, this one included. API tokens are not
        sessions: they keep working until you delete them below.
      </p>
      {error !== null && <ErrorBox error={error} />}
      <div>
        <button class="button" type="button" onClick={() => setConfirming(true)}>
          Sign out everywhere
        </button>
      </div>
      <Dialog open={confirming} title="Sign out everywhere?" onClose={() => setConfirming(false)}>
        <DialogConfirm label="Sign out everywhere" busy={busy} onConfirm={signOutAll} onCancel={() => setConfirming(false)}>
          <p>Every session of yours ends, here and on every other browser and CLI, with their terminals and tunnels.</p>
        </DialogConfirm>
      </Dialog>
    </section>
  );
}

function TokensCard() {
  const [list, setList] = useState<APIToken[] | null>(null);
  const [loadError, setLoadError] = useState<unknown>(null);
  const [name, setName] = useState("");
  const [lifetime, setLifetime] = useState("720h");
  const [created, setCreated] = useState<CreateAPITokenResponse | null>(null);
  const [deleting, setDeleting] = useState<APIToken | null>(null);
  const [busy, error, run] = useAction();
  const [delBusy, delError, runDelete, clearDelError] = useAction();
  // Closing the dialog, by Cancel or Escape, forgets its error.
  const closeDelete = () => {
    setDeleting(null);
    clearDelError();
  };
  const now = Date.now();
  const load = () =>
    api.tokens().then(
      (ts) => {
        setList(ts ?? []);
        setLoadError(null);
      },
      (err) => setLoadError(err),
    );
  useEffect(() => {
    void load();
  }, []);
  const submit = (e: Event) => {
    e.preventDefault();
    void run(async () => {
      const t = await api.createToken({ name: name.trim() || undefined, lifetime });
      setName("");
      setCreated(t);
      await load();
    });
  };
  return (
    <section class="card panel" aria-labelledby="tokens-title">
      <h2 id="tokens-title">API tokens</h2>
      <p class="muted">
        Tokens let scripts and CI act as you: send one in the <code>Tether-Session-Token</code> header, as{" "}
        <code>Authorization: Bearer</code>, or as <code>TETHER_SESSION_TOKEN</code> for the CLI. A token is shown
        once, when you create it; it stops working when it expires, when you delete it, or while your account is
        suspended.
      </p>
      <form class="token-form" onSubmit={submit}>
        <label>
          Name
          <input
            name="token_name"
            autocomplete="off"
            autocapitalize="none"
            spellcheck={false}
            placeholder="ci"
            maxLength={20}
            value={name}
            onInput={(e) => setName(e.currentTarget.value)}
          />
        </label>
        <label>
          Expires after
          <select name="lifetime" value={lifetime} onChange={(e) => setLifetime(e.currentTarget.value)}>
            {lifetimes.map((l) => (
              <option key={l.value} value={l.value}>
                {l.label}
              </option>
            ))}
          </select>
        </label>
        <button class="button button-primary" type="submit" disabled={busy}>
          {busy ? "Creating…" : "Create token"}
        </button>
      </form>
      {error !== null && <ErrorBox error={error} />}
      <Dialog open={created !== null} title="Your new API token" onClose={() => setCreated(null)} wide>
        {created && (
          <div class="dialog-body" data-testid="token-created">
            <p>
              Copy the token <strong>{created.name}</strong> now: it is shown only this once. It works until{" "}
              {formatDate(created.expires_at)}.
            </p>
            <Secret value={created.token} label="API token" />
            <p class="muted small">For example:</p>
            <pre class="example">
              curl -H "Tether-Session-Token: {created.token}" {location.origin}/api/v2/users/me
            </pre>
            <div class="dialog-actions">
              <button class="button button-primary" type="button" onClick={() => setCreated(null)} autofocus>
                Done
              </button>
            </div>
          </div>
        )}
      </Dialog>
      <Dialog open={deleting !== null} title="Delete API token?" onClose={closeDelete}>
        {deleting && (
          <DialogConfirm
            label="Delete token"
            busy={delBusy}
            onCancel={closeDelete}
            onConfirm={() =>
              runDelete(async () => {
                await api.deleteToken(deleting.id);
                setDeleting(null);
                await load();
              })
            }
          >
            <p>
              Delete <strong>{deleting.name}</strong>? Scripts using it are refused at once, and connections opened
              with it end.
            </p>
            {delError !== null && <ErrorBox error={delError} />}
          </DialogConfirm>
        )}
      </Dialog>
      {loadError !== null && <ErrorBox error={loadError} title="Could not load your tokens." />}
      {list !== null && list.length === 0 && <p class="muted">You have no API tokens.</p>}
      {list !== null && list.length > 0 && (
        <TableCard columns={["Token", "Created", "Last used", "Expires"]} actions tableClass="table-middle" nested>
          {list.map((t) => {
            const expired = Date.parse(t.expires_at) <= now;
            return (
              <tr key={t.id} data-token={t.name}>
                <td data-label="Token" class="ws-name">
                  {t.name}
                </td>
                <td data-label="Created" class="muted">
                  {formatDate(t.created_at)}
                </td>
                <td data-label="Last used" class="muted">
                  {relativeTime(t.last_used_at, now)}
                </td>
                <td data-label="Expires">
                  {expired ? <Badge tone="warning">expired</Badge> : formatDate(t.expires_at)}
                </td>
                <td class="actions">
                  <button
                    class="button button-danger-quiet"
                    type="button"
                    onClick={() => setDeleting(t)}
                    aria-label={`Delete token ${t.name}`}
                  >
                    Delete
                  </button>
                </td>
              </tr>
            );
          })}
        </TableCard>
      )}
    </section>
  );
}
