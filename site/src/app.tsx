import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";
import { AccountPage } from "./account";
import { api } from "./api";
import { HealthPage } from "./health";
import { LoginPage } from "./login";
import { parseRoute } from "./routes";
import type { User } from "./tether.gen";
import { TemplatesPage } from "./templates";
import { Link, Logo, navEvent, navigate } from "./ui";
import { UsersPage } from "./users";
import { WorkspacesPage } from "./workspaces";

export function App() {
  const [path, setPath] = useState(location.pathname);
  useEffect(() => {
    const update = () => setPath(location.pathname);
    window.addEventListener("popstate", update);
    window.addEventListener(navEvent, update);
    return () => {
      window.removeEventListener("popstate", update);
      window.removeEventListener(navEvent, update);
    };
  }, []);

  const route = parseRoute(path);
  switch (route.page) {
    case "login":
      return <LoginPage />;
    case "workspaces":
      return <Shell path={path}>{() => <WorkspacesPage />}</Shell>;
    case "health":
      return <Shell path={path}>{() => <HealthPage />}</Shell>;
    case "templates":
      return <Shell path={path}>{(me) => <TemplatesPage me={me} />}</Shell>;
    case "users":
      return <Shell path={path}>{(me) => <UsersPage me={me} />}</Shell>;
    case "account":
      return <Shell path={path}>{(me) => <AccountPage me={me} />}</Shell>;
    default:
      // The terminal is started before the app renders (see main.tsx).
      return <Shell path={path}>{() => <NotFound />}</Shell>;
  }
}

// Shell is the frame of the signed-in pages. It stays mounted while the
// user moves between them, so "who am I" is asked once.
function Shell({ path, children }: { path: string; children: (me: User | null) => ComponentChildren }) {
  const [me, setMe] = useState<User | null>(null);
  useEffect(() => {
    api.me().then(setMe, () => {});
  }, []);
  const signOut = async () => {
    try {
      await api.logout();
    } finally {
      navigate("/login", true);
    }
  };
  const nav = (href: string, label: string) => (
    <Link href={href} class={path === href ? "active" : undefined} aria-current={path === href ? "page" : undefined}>
      {label}
    </Link>
  );
  return (
    <>
      <header class="topbar">
        <div class="topbar-inner">
          <Link href="/" class="brand">
            <Logo />
            <span>Tether</span>
          </Link>
          <nav>
            {nav("/", "Workspaces")}
            {nav("/templates", "Templates")}
            {me?.role === "admin" && nav("/users", "Users")}
            {nav("/health", "Health")}
          </nav>
          <div class="user">
            {me && (
              <Link
                href="/account"
                class={path === "/account" ? "user-name active" : "user-name"}
                title={`${me.email}: your account, password and API tokens`}
                aria-current={path === "/account" ? "page" : undefined}
              >
                {me.username}
                {me.role === "admin" && <span class="role">admin</span>}
              </Link>
            )}
            <button class="button button-quiet" type="button" onClick={signOut}>
              Sign out
            </button>
          </div>
        </div>
      </header>
      <main class="content">{children(me)}</main>
    </>
  );
}

function NotFound() {
  useEffect(() => {
    document.title = "Not found — Tether";
  }, []);
  return (
    <div class="card empty">
      <h1>Page not found</h1>
      <p>
        There is nothing at <code>{location.pathname}</code>. <Link href="/">Go to your workspaces</Link>.
      </p>
    </div>
  );
}
