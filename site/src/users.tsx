import { useEffect, useState } from "preact/hooks";
import { api, ApiError } from "./api";
import { formatDate } from "./format";
import type { Role, User } from "./tether.gen";
import { Badge, Dialog, DialogConfirm, DialogForm, ErrorBox, TableCard, useAction } from "./ui";

type Pending = { kind: "delete" | "password" | "suspend"; user: User } | null;

/** UsersPage is for admins: add users, change roles, suspend, reset
 * passwords and delete, with the rules the server enforces (the last
 * admin stays; admins do not suspend or delete themselves). */
export function UsersPage({ me }: { me: User | null }) {
  const [list, setList] = useState<User[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [adding, setAdding] = useState(false);
  const [pending, setPending] = useState<Pending>(null);
  const [notice, setNotice] = useState("");
  const [busy, actionError, run] = useAction();
  const load = () =>
    api.users().then(
      (us) => {
        setList(us);
        setError(null);
      },
      (err) => setError(err),
    );
  useEffect(() => {
    document.title = "Users — Tether";
    void load();
  }, []);
  if (me && me.role !== "admin") {
    return (
      <div class="card empty">
        <h1>Admins only</h1>
        <p>Only admins manage users. Your own password and API tokens are on your account page.</p>
      </div>
    );
  }
  const act = (msg: string, fn: () => Promise<unknown>) =>
    run(async () => {
      setNotice("");
      await fn();
      setNotice(msg);
      await load();
    });
  return (
    <>
      <div class="page-head">
        <h1>Users</h1>
        {list && <span class="muted">{list.length === 1 ? "1 user" : `${list.length} users`}</span>}
        <button class="button button-primary" type="button" onClick={() => setAdding(true)}>
          Add user
        </button>
      </div>
      {notice && (
        <div class="alert alert-info" role="status">
          {notice}
        </div>
      )}
      {actionError !== null && <ErrorBox error={actionError} />}
      {error !== null && <ErrorBox error={error} title="Could not load users." />}
      <Dialog open={adding} title="Add a user" onClose={() => setAdding(false)}>
        <AddUserForm
          onClose={() => setAdding(false)}
          onDone={(u) => {
            setAdding(false);
            setNotice(`Added ${u.role} ${u.username}.`);
            void load();
          }}
        />
      </Dialog>
      <Dialog open={pending?.kind === "password"} title="Reset password" onClose={() => setPending(null)}>
        {pending && (
          <ResetPasswordForm
            user={pending.user}
            onClose={() => setPending(null)}
            onDone={() => {
              setNotice(`${pending.user.username}'s password was reset; their sessions have ended.`);
              setPending(null);
            }}
          />
        )}
      </Dialog>
      <Dialog open={pending?.kind === "suspend"} title="Suspend user?" onClose={() => setPending(null)}>
        {pending && (
          <DialogConfirm
            label="Suspend"
            onCancel={() => setPending(null)}
            onConfirm={() => {
              const u = pending.user;
              setPending(null);
              void act(`Suspended ${u.username}.`, () => api.setUserStatus(u.username, "suspended"));
            }}
          >
            <p>
              Suspend <strong>{pending.user.username}</strong>? Their sessions, web terminals and tunnels end
              at once, and their API tokens stop working, until you make them active again.
            </p>
          </DialogConfirm>
        )}
      </Dialog>
      <Dialog open={pending?.kind === "delete"} title="Delete user?" onClose={() => setPending(null)}>
        {pending && (
          <DeleteUserForm
            user={pending.user}
            onClose={() => setPending(null)}
            onDone={(n) => {
              setNotice(`Deleted ${pending.user.username}${n ? ` and ${n === 1 ? "1 workspace" : `${n} workspaces`}` : ""}.`);
              setPending(null);
              void load();
            }}
          />
        )}
      </Dialog>
      {list === null && error === null && <p class="muted">Loading…</p>}
      {list !== null && (
        <TableCard columns={["User", "Role", "Status", "Created"]} actions tableClass="table-middle">
          {list.map((u) => {
            const self = u.id === me?.id;
            return (
              <tr key={u.id} data-user={u.username}>
                <td data-label="User">
                  <div class="ws-name">
                    {u.username}
                    {self && <span class="muted small"> (you)</span>}
                  </div>
                  <div class="muted small">{u.email}</div>
                </td>
                <td data-label="Role">
                  <select
                    aria-label={`Role of ${u.username}`}
                    value={u.role}
                    disabled={busy}
                    onChange={(e) => {
                      const role = e.currentTarget.value as Role;
                      if (
                        self &&
                        role !== "admin" &&
                        !confirm("Make yourself a member? You lose the admin pages and other users' workspaces; another admin can undo it.")
                      ) {
                        e.currentTarget.value = u.role;
                        return;
                      }
                      void act(`${u.username} is now ${role}.`, () => api.setUserRole(u.username, role));
                    }}
                  >
                    <option value="member">member</option>
                    <option value="admin">admin</option>
                  </select>
                </td>
                <td data-label="Status">
                  <Badge tone={u.status === "active" ? "ok" : "warning"}>{u.status}</Badge>
                </td>
                <td data-label="Created" class="muted">
                  {formatDate(u.created_at)}
                </td>
                <td class="actions">
                  <div class="action-group">
                    {u.status === "active" ? (
                      <button
                        class="button"
                        type="button"
                        disabled={self || busy}
                        title={self ? "Another admin can suspend you" : undefined}
                        onClick={() => setPending({ kind: "suspend", user: u })}
                        aria-label={`Suspend ${u.username}`}
                      >
                        Suspend
                      </button>
                    ) : (
                      <button
                        class="button"
                        type="button"
                        disabled={busy}
                        onClick={() => act(`${u.username} is active again.`, () => api.setUserStatus(u.username, "active"))}
                        aria-label={`Unsuspend ${u.username}`}
                      >
                        Unsuspend
                      </button>
                    )}
                    <button
                      class="button"
                      type="button"
                      disabled={self}
                      title={self ? "Change your own password on your account page" : undefined}
                      onClick={() => setPending({ kind: "password", user: u })}
                      aria-label={`Reset the password of ${u.username}`}
                    >
                      Reset password
                    </button>
                    <button
                      class="button button-danger-quiet"
                      type="button"
                      disabled={self}
                      title={self ? "Another admin can delete you" : undefined}
                      onClick={() => setPending({ kind: "delete", user: u })}
                      aria-label={`Delete ${u.username}`}
                    >
                      Delete
                    </button>
                  </div>
                </td>
              </tr>
            );
          })}
        </TableCard>
      )}
    </>
  );
}

function AddUserForm({ onClose, onDone }: { onClose: () => void; onDone: (u: User) => void }) {
  const [username, setUsername] = useState("");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [role, setRole] = useState<Role>("member");
  const [busy, error, run] = useAction();
  const submit = () =>
    run(async () => onDone(await api.createUser({ username: username.trim(), email: email.trim(), password, role })));
  return (
    <DialogForm label="Add user" busyLabel="Adding…" busy={busy} onSubmit={submit} onCancel={onClose}>
      {error !== null && <ErrorBox error={error} />}
      <label>
        Username
        <input
          name="username"
          required
          autofocus
          autocomplete="off"
          autocapitalize="none"
          spellcheck={false}
          value={username}
          onInput={(e) => setUsername(e.currentTarget.value)}
        />
      </label>
      <label>
        Email
        <input name="email" type="email" required autocomplete="off" value={email} onInput={(e) => setEmail(e.currentTarget.value)} />
      </label>
      <label>
        Password
        <input
          name="password"
          type="password"
          required
          minLength={8}
          autocomplete="new-password"
          value={password}
          onInput={(e) => setPassword(e.currentTarget.value)}
        />
        <span class="hint">At least 8 characters, and not a common one. Tell it to the user another way.</span>
      </label>
      <label>
        Role
        <select name="role" value={role} onChange={(e) => setRole(e.currentTarget.value as Role)}>
          <option value="member">member</option>
          <option value="admin">admin</option>
        </select>
      </label>
    </DialogForm>
  );
}

function ResetPasswordForm({ user, onClose, onDone }: { user: User; onClose: () => void; onDone: () => void }) {
  const [password, setPassword] = useState("");
  const [busy, error, run] = useAction();
  const submit = () =>
    run(async () => {
      await api.setPassword(user.username, { password });
      onDone();
    });
  return (
    <DialogForm label="Reset password" busyLabel="Saving…" busy={busy} onSubmit={submit} onCancel={onClose}>
      <p>
        Set a new password for <strong>{user.username}</strong>. Every session of theirs ends at once.
      </p>
      {error !== null && <ErrorBox error={error} />}
      <label>
        New password
        <input
          name="password"
          type="password"
          required
          minLength={8}
          autofocus
          autocomplete="new-password"
          value={password}
          onInput={(e) => setPassword(e.currentTarget.value)}
        />
      </label>
    </DialogForm>
  );
}

/** DeleteUserForm deletes a user; when they own workspaces the server
 * says which, and the admin chooses to delete those too. */
function DeleteUserForm({ user, onClose, onDone }: { user: User; onClose: () => void; onDone: (workspaces: number) => void }) {
  const [withWorkspaces, setWithWorkspaces] = useState(false);
  const [owns, setOwns] = useState("");
  const [busy, error, run] = useAction();
  const del = () =>
    run(async () => {
      try {
        const r = await api.deleteUser(user.username, withWorkspaces);
        onDone(r.deleted_workspaces?.length ?? 0);
      } catch (err) {
        if (err instanceof ApiError && err.status === 409 && !withWorkspaces && /owns/.test(err.message)) {
          setOwns(err.message);
          return;
        }
        throw err;
      }
    });
  return (
    <DialogConfirm
      label={owns ? "Delete user and workspaces" : "Delete user"}
      busyLabel="Deleting…"
      busy={busy}
      disabled={owns !== "" && !withWorkspaces}
      onConfirm={del}
      onCancel={onClose}
    >
      <p>
        Delete <strong>{user.username}</strong> ({user.email})? Their sessions, tokens and connections end.
        This cannot be undone.
      </p>
      {owns && (
        <div class="alert alert-warning" role="alert">
          {owns.replace(/: delete them first.*$/, ".")}
        </div>
      )}
      {owns && (
        <label class="check-label">
          <input type="checkbox" checked={withWorkspaces} onChange={(e) => setWithWorkspaces(e.currentTarget.checked)} />
          Delete their workspaces too
        </label>
      )}
      {error !== null && <ErrorBox error={error} />}
    </DialogConfirm>
  );
}
