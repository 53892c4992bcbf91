import { useEffect, useState } from "preact/hooks";
import { api } from "./api";
import { safeRedirect } from "./routes";
import { ErrorBox, Logo, navigate } from "./ui";

/** afterSignIn is where the redirect parameter asks to go, if on this site. */
function afterSignIn(): string {
  return safeRedirect(new URLSearchParams(location.search).get("redirect"), location.origin);
}

export function LoginPage() {
  const [login, setLogin] = useState("");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [noUsers, setNoUsers] = useState(false);

  useEffect(() => {
    document.title = "Sign in — Tether";
    // Someone already signed in (another tab, a back button) goes on.
    api.whoAmI().then(
      (me) => me && navigate(afterSignIn(), true),
      () => {},
    );
    api
      .firstUserExists()
      .then((r) => setNoUsers(!r.exists))
      .catch(() => {});
  }, []);

  const onSubmit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api.login(login.trim(), password);
      navigate(afterSignIn(), true);
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };

  return (
    <main class="login">
      <form class="card login-card" onSubmit={onSubmit} method="post">
        <div class="login-brand">
          <Logo />
          <span>Tether</span>
        </div>
        <h1>Sign in</h1>
        {noUsers && (
          <div class="alert alert-info">
            This server has no users yet. Create the first admin with{" "}
            <code>tether login {location.origin}</code>.
          </div>
        )}
        {error !== null && <ErrorBox error={error} />}
        <label>
          Username or email
          <input
            name="login"
            autocomplete="username"
            autocapitalize="none"
            spellcheck={false}
            required
            autofocus
            value={login}
            onInput={(e) => setLogin(e.currentTarget.value)}
          />
        </label>
        <label>
          Password
          <input
            name="password"
            type="password"
            autocomplete="current-password"
            required
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
        </label>
        <button class="button button-primary" type="submit" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}
