// The slice of Tether's HTTP API (/api/v2) that the dashboard uses, typed
// with the wire types generated from Go (tether.gen.ts). Every call carries
// the HttpOnly session cookie; a 401 from any call except the sign-in
// itself sends the browser to /login and comes back afterwards.
//
// Every call also carries the CSRF header: the server refuses requests that
// change something when the cookie signs them in and they carry neither the
// dashboard's Origin nor this header, which no page of another origin can
// make a browser send.

import { nextPage } from "./pages";
import {
  CSRFHeader,
  type APIToken,
  type BuildInfo,
  type CreateAPITokenRequest,
  type CreateAPITokenResponse,
  type CreateUserRequest,
  type CreateWorkspaceRequest,
  type CreateWorkspaceResponse,
  type DeleteUserResponse,
  type EndSessionsResponse,
  type Role,
  type Template,
  type UpdateUserPasswordRequest,
  type UserStatus,
  type ErrorResponse,
  type FirstUserResponse,
  type HealthReport,
  type LoginRequest,
  type LoginResponse,
  type StartupScriptResult,
  type Region,
  type User,
  type Workspace,
} from "./tether.gen";

/** ApiError is a non-2xx answer, with the server's message for people. */
export class ApiError extends Error {
  readonly status: number;
  readonly detail: string;
  constructor(status: number, message: string, detail = "") {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.detail = detail;
  }
}

/** loginURL is where to send the browser to sign in and come back to here. */
export function loginURL(): string {
  const here = location.pathname + location.search;
  if (location.pathname === "/login") return here;
  return "/login?redirect=" + encodeURIComponent(here);
}

interface RequestOptions {
  method?: string;
  body?: unknown;
  /** yaml is sent as it is, as application/yaml, instead of body. */
  yaml?: string;
  /** noAuthRedirect keeps a 401 as an error instead of going to /login. */
  noAuthRedirect?: boolean;
  signal?: AbortSignal;
  /** headers receives the headers of a successful response. */
  headers?: (h: Headers) => void;
}

/** requestHeaders are the headers of every API request; CSRFHeader proves
 * that a request comes from the dashboard's own scripts. */
export function requestHeaders(json: boolean): Record<string, string> {
  const headers: Record<string, string> = { Accept: "application/json", [CSRFHeader]: "1" };
  if (json) headers["Content-Type"] = "application/json";
  return headers;
}

async function request<T>(path: string, opts: RequestOptions = {}): Promise<T> {
  const headers = requestHeaders(opts.body !== undefined);
  let body: string | undefined;
  if (opts.body !== undefined) body = JSON.stringify(opts.body);
  if (opts.yaml !== undefined) {
    headers["Content-Type"] = "application/yaml";
    body = opts.yaml;
  }
  let res: Response;
  try {
    res = await fetch("/api/v2" + path, {
      method: opts.method ?? "GET",
      headers,
      body,
      credentials: "same-origin",
      cache: "no-store",
      signal: opts.signal,
    });
  } catch (err) {
    if (err instanceof DOMException && err.name === "AbortError") throw err;
    throw new ApiError(0, "Cannot reach the Tether server.", String(err));
  }
  if (res.status === 401 && !opts.noAuthRedirect) {
    location.assign(loginURL());
    // Never settles: the page is going away, and callers must not show
    // an error meanwhile.
    return new Promise<T>(() => {});
  }
  if (!res.ok) {
    let message = `${res.status} ${res.statusText}`.trim();
    let detail = "";
    try {
      const e = (await res.json()) as Partial<ErrorResponse>;
      if (e.message) message = e.message;
      if (e.detail) detail = e.detail;
    } catch {
      // Not JSON (a proxy's error page, say): keep the status line.
    }
    throw new ApiError(res.status, message, detail);
  }
  opts.headers?.(res.headers);
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

/** requestAll gets every page of a list endpoint, in order. */
async function requestAll<T>(path: string, signal?: AbortSignal): Promise<T[]> {
  const all: T[] = [];
  let next: string | null = path + (path.includes("?") ? "&" : "?") + "limit=1000";
  for (let pages = 0; next !== null && pages < 10000; pages++) {
    let link: string | null = null;
    const page: T[] | null = await request<T[] | null>(next, { signal, headers: (h) => (link = h.get("Link")) });
    all.push(...(page ?? []));
    next = nextPage(next, link);
  }
  return all;
}

export const api = {
  login: (login: string, password: string) =>
    request<LoginResponse>("/users/login", {
      method: "POST",
      body: { login, password } satisfies LoginRequest,
      noAuthRedirect: true,
    }),
  logout: () => request<void>("/users/logout", { method: "POST", noAuthRedirect: true }),
  me: () => request<User>("/users/me"),
  /** whoAmI is me without the trip to /login: null when signed out. */
  whoAmI: () =>
    request<User>("/users/me", { noAuthRedirect: true }).catch((err) => {
      if (err instanceof ApiError && err.status === 401) return null;
      throw err;
    }),
  firstUserExists: () =>
    request<FirstUserResponse>("/users/first", { noAuthRedirect: true }),
  buildInfo: () => request<BuildInfo>("/buildinfo", { noAuthRedirect: true }),
  workspaces: (signal?: AbortSignal) => requestAll<Workspace>("/workspaces", signal),
  workspace: (owner: string, name: string) =>
    request<Workspace>(`/workspaces/${encodeURIComponent(owner)}/${encodeURIComponent(name)}`),
  /** startupScript is the last result of a workspace's startup script, with its output. */
  startupScript: (owner: string, name: string) =>
    request<StartupScriptResult>(
      `/workspaces/${encodeURIComponent(owner)}/${encodeURIComponent(name)}/startup-script`,
    ),
  regions: (signal?: AbortSignal) => request<Region[]>("/regions", { signal }),
  health: (signal?: AbortSignal) => request<HealthReport>("/debug/health", { signal }),

  createWorkspace: (req: CreateWorkspaceRequest) =>
    request<CreateWorkspaceResponse>("/workspaces", { method: "POST", body: req }),
  deleteWorkspace: (owner: string, name: string) =>
    request<void>(`/workspaces/${encodeURIComponent(owner)}/${encodeURIComponent(name)}`, { method: "DELETE" }),

  templates: (signal?: AbortSignal) => request<Template[]>("/templates", { signal }),
  /** pushTemplate uploads a template file; the server checks it and names
   * the line of a mistake. */
  pushTemplate: (yaml: string) => request<Template>("/templates", { method: "POST", yaml }),

  users: (signal?: AbortSignal) => requestAll<User>("/users", signal),
  createUser: (req: CreateUserRequest) => request<User>("/users", { method: "POST", body: req }),
  setUserRole: (user: string, role: Role) =>
    request<User>(`${userPath(user)}/role`, { method: "PUT", body: { role } }),
  setUserStatus: (user: string, status: UserStatus) =>
    request<User>(`${userPath(user)}/status`, { method: "PUT", body: { status } }),
  setPassword: (user: string, req: UpdateUserPasswordRequest) =>
    request<void>(`${userPath(user)}/password`, { method: "PUT", body: req }),
  deleteUser: (user: string, deleteWorkspaces: boolean) =>
    request<DeleteUserResponse>(`${userPath(user)}${deleteWorkspaces ? "?delete_workspaces=true" : ""}`, {
      method: "DELETE",
    }),
  endSessions: (user: string) =>
    request<EndSessionsResponse>(`${userPath(user)}/sessions`, { method: "DELETE", noAuthRedirect: true }),

  tokens: (signal?: AbortSignal) => request<APIToken[]>("/users/me/tokens", { signal }),
  createToken: (req: CreateAPITokenRequest) =>
    request<CreateAPITokenResponse>("/users/me/tokens", { method: "POST", body: req }),
  deleteToken: (id: string) => request<void>(`/users/me/tokens/${encodeURIComponent(id)}`, { method: "DELETE" }),
};

function userPath(user: string): string {
  return "/users/" + encodeURIComponent(user);
}
