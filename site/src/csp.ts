// The page's Content-Security-Policy allows <style> elements only with the
// nonce that the server put in this response (and in a meta tag for us).
// xterm.js's DOM renderer injects <style> elements for its theme and cell
// sizes and takes no nonce, so every <style> created from here on is
// stamped with it, at creation, before it is inserted, which is when the
// browser checks it.

export function stampStyleNonces(doc: Document = document): void {
  const nonce = doc.querySelector<HTMLMetaElement>('meta[name="tether-csp-nonce"]')?.content;
  if (!nonce || nonce.startsWith("__")) return;
  const create = doc.createElement.bind(doc) as (tag: string, options?: ElementCreationOptions) => HTMLElement;
  doc.createElement = function (tag: string, options?: ElementCreationOptions) {
    const el = create(tag, options);
    if (tag.toLowerCase() === "style") el.setAttribute("nonce", nonce);
    return el;
  } as typeof doc.createElement;
}
