// Small building blocks shared by the pages: navigation without reloads,
// polling that pauses in hidden tabs, and status badges.

import type { ComponentChildren, JSX } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { capitalize } from "./format";
import { isSPAPage } from "./routes";

/** navEvent tells the app that history.pushState changed the path. */
export const navEvent = "tether:navigate";

/** navigate goes to a path (or an absolute URL) on this site. Pages other
 * than the app's own (the terminal, which loads xterm.js, apps, API URLs
 * such as an app's sign-in redirect) are documents of their own, so going
 * there is a full page load. */
export function navigate(path: string, replace = false): void {
  const u = new URL(path, location.origin);
  if (u.origin !== location.origin) throw new Error(`navigate: ${path} is not on this site`);
  if (!isSPAPage(u.pathname)) {
    if (replace) location.replace(u.href);
    else location.assign(u.href);
    return;
  }
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  window.dispatchEvent(new Event(navEvent));
  window.scrollTo(0, 0);
}

type AnchorProps = JSX.HTMLAttributes<HTMLAnchorElement> & { href: string; children?: ComponentChildren };

/** Link is an anchor that navigates inside the app on a plain click and
 * behaves as a normal link otherwise (new tab, copy link, middle click). */
export function Link({ href, children, ...rest }: AnchorProps) {
  const onClick = (e: MouseEvent) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(href);
  };
  return (
    <a href={href} onClick={onClick} {...rest}>
      {children}
    </a>
  );
}

/**
 * usePoll runs fn now and then every interval ms after the previous run
 * ends, never two at once. It pauses while the tab is hidden and runs as
 * soon as the tab shows again. The returned function runs fn at once.
 */
export function usePoll(fn: (signal: AbortSignal) => Promise<void>, interval: number): () => void {
  const fnRef = useRef(fn);
  fnRef.current = fn;
  const runNow = useRef<() => void>(() => {});
  useEffect(() => {
    let timer = 0;
    let running = false;
    let again = false;
    const ctl = new AbortController();
    const run = async () => {
      clearTimeout(timer);
      if (running) {
        again = true;
        return;
      }
      running = true;
      try {
        await fnRef.current(ctl.signal);
      } catch {
        // fn reports its own errors; a failed run is retried on schedule.
      }
      running = false;
      if (ctl.signal.aborted) return;
      if (again) {
        again = false;
        void run();
        return;
      }
      if (!document.hidden) timer = window.setTimeout(run, interval);
    };
    const onVisibility = () => {
      if (!document.hidden) void run();
      else clearTimeout(timer);
    };
    runNow.current = () => void run();
    document.addEventListener("visibilitychange", onVisibility);
    void run();
    return () => {
      ctl.abort();
      clearTimeout(timer);
      document.removeEventListener("visibilitychange", onVisibility);
    };
  }, [interval]);
  return () => runNow.current();
}

export type Tone = "ok" | "warning" | "error" | "neutral" | "info";

export function Badge({ tone, children, title }: { tone: Tone; children: ComponentChildren; title?: string }) {
  return (
    <span class={`badge badge-${tone}`} title={title}>
      <span class="dot" aria-hidden="true" />
      {children}
    </span>
  );
}

/** severityTone maps the API's severities to badge colours. */
export function severityTone(s: string): Tone {
  return s === "ok" ? "ok" : s === "warning" ? "warning" : s === "error" ? "error" : "neutral";
}

export function ErrorBox({ error, title }: { error: unknown; title?: string }) {
  const e = error as { message?: string; detail?: string };
  return (
    <div class="alert alert-error" role="alert">
      {title && <strong>{title} </strong>}
      {capitalize(e?.message ?? String(error))}
      {e?.detail && <div class="alert-detail">{e.detail}</div>}
    </div>
  );
}

export function Logo() {
  return (
    <svg class="logo" viewBox="0 0 32 32" width="26" height="26" aria-hidden="true">
      <rect class="logo-bg" width="32" height="32" rx="8" />
      <circle class="logo-ink" cx="10" cy="11" r="3.2" />
      <circle class="logo-ink" cx="22" cy="21" r="3.2" />
      <path class="logo-line" d="M12.3 13.3 19.7 18.7" />
    </svg>
  );
}

let dialogSeq = 0;

/**
 * Dialog is a modal dialog (the native <dialog>, shown with showModal):
 * the browser keeps focus inside it, Escape closes it, and focus goes back
 * to where it was. Its contents mount only while it is open, so each
 * opening starts fresh. A form inside submits with Enter.
 */
export function Dialog({
  open,
  title,
  onClose,
  children,
  wide,
}: {
  open: boolean;
  title: string;
  onClose: () => void;
  children: ComponentChildren;
  wide?: boolean;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const id = useRef(`dialog-${++dialogSeq}`).current;
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (open && !d.open) {
      d.showModal();
      // showModal focuses the [autofocus] element; say so explicitly for
      // browsers that focus the dialog itself instead.
      d.querySelector<HTMLElement>("[autofocus]")?.focus();
    }
    if (!open && d.open) d.close();
  }, [open]);
  return (
    <dialog
      ref={ref}
      class={wide ? "dialog dialog-wide" : "dialog"}
      aria-labelledby={id}
      onCancel={(e) => {
        e.preventDefault();
        onClose();
      }}
    >
      {open && (
        <>
          <h2 id={id}>{title}</h2>
          {children}
        </>
      )}
    </dialog>
  );
}

/**
 * DialogForm is the body of a Dialog that asks for something: the fields
 * (children), then Cancel and a submit button, which reads busyLabel while
 * the action runs. Enter in a field submits.
 */
export function DialogForm({
  label,
  busyLabel,
  busy,
  disabled,
  onSubmit,
  onCancel,
  children,
}: {
  label: string;
  busyLabel: string;
  busy: boolean;
  disabled?: boolean;
  onSubmit: () => void;
  onCancel: () => void;
  children: ComponentChildren;
}) {
  const submit = (e: Event) => {
    e.preventDefault();
    onSubmit();
  };
  return (
    <form class="dialog-body" onSubmit={submit}>
      {children}
      <div class="dialog-actions">
        <button class="button" type="button" onClick={onCancel}>
          Cancel
        </button>
        <button class="button button-primary" type="submit" disabled={busy || disabled}>
          {busy ? busyLabel : label}
        </button>
      </div>
    </form>
  );
}

/**
 * DialogConfirm is the body of a Dialog that asks before doing something
 * that cannot be undone: the question (children), then Cancel, which has
 * the focus so that Enter does no harm, and a red button that does it and
 * reads busyLabel, if given, while it runs.
 */
export function DialogConfirm({
  label,
  busyLabel,
  busy,
  disabled,
  onConfirm,
  onCancel,
  children,
}: {
  label: string;
  busyLabel?: string;
  busy?: boolean;
  disabled?: boolean;
  onConfirm: () => void;
  onCancel: () => void;
  children: ComponentChildren;
}) {
  return (
    <div class="dialog-body">
      {children}
      <div class="dialog-actions">
        <button class="button" type="button" onClick={onCancel} autofocus>
          Cancel
        </button>
        <button class="button button-danger" type="button" onClick={onConfirm} disabled={busy || disabled}>
          {busy && busyLabel ? busyLabel : label}
        </button>
      </div>
    </div>
  );
}

/**
 * TableCard is a list shown as a table in a card: the head names the
 * columns, the children are the rows. With actions, a last column holds
 * each row's buttons; its title is for screen readers only. A nested
 * table sits in a card of the page already and gets no card of its own.
 */
export function TableCard({
  columns,
  actions,
  tableClass,
  nested,
  children,
}: {
  columns: string[];
  actions?: boolean;
  tableClass?: string;
  nested?: boolean;
  children: ComponentChildren;
}) {
  return (
    <div class={nested ? "table-card" : "card table-card"}>
      <table class={tableClass}>
        <thead>
          <tr>
            {columns.map((c) => (
              <th key={c}>{c}</th>
            ))}
            {actions && (
              <th>
                <span class="visually-hidden">Actions</span>
              </th>
            )}
          </tr>
        </thead>
        <tbody>{children}</tbody>
      </table>
    </div>
  );
}

/** Secret shows a value to copy (a token, a command) with a Copy button. */
export function Secret({ value, label }: { value: string; label: string }) {
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(value);
      setCopied(true);
    } catch {
      // No clipboard (plain http): the text is selectable.
    }
  };
  return (
    <div class="secret">
      <pre class="secret-value" aria-label={label} tabIndex={0}>
        {value}
      </pre>
      <button class="button" type="button" onClick={copy}>
        {copied ? "Copied" : "Copy"}
      </button>
    </div>
  );
}

/** useAction tracks one action at a time: busy while it runs, and its error. */
export function useAction(): [boolean, unknown, (fn: () => Promise<void>) => Promise<void>, () => void] {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const run = async (fn: () => Promise<void>) => {
    setBusy(true);
    setError(null);
    try {
      await fn();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return [busy, error, run, () => setError(null)];
}

/** useFocusOnMount focuses an element when it appears: for the button of a
 * dialog's second step, where the autofocus attribute no longer applies
 * (it works only as the dialog opens). */
export function useFocusOnMount<T extends HTMLElement>() {
  const ref = useRef<T>(null);
  useEffect(() => {
    ref.current?.focus();
  }, []);
  return ref;
}
