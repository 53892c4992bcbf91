// The dashboard's entry point. The terminal page is its own small program
// (xterm.js, loaded only there); every other route is the Preact app.

import "@xterm/xterm/css/xterm.css";
import "./style.css";
import { render } from "preact";
import { App } from "./app";
import { parseRoute } from "./routes";

const root = document.getElementById("root")!;
const route = parseRoute(location.pathname);
if (route.page === "terminal") {
  import("./terminal").then(
    (m) => m.startTerminal(root, route.owner, route.workspace),
    (err) => {
      root.textContent = `The terminal failed to load: ${String(err)}. Reload the page to try again.`;
    },
  );
} else {
  render(<App />, root);
}
