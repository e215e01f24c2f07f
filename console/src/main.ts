// The console's shell: sign-in, the navigation the caller's scopes allow,
// and a router over the screens (addresses a browser can reload).
import "./style.css";
import { explain, resume, signIn, signOut, type Session } from "./api.js";
import { fill, field, h } from "./dom.js";
import { alertsScreen } from "./screens/alerts.js";
import { customerScreen } from "./screens/customer.js";
import { duplicatesScreen } from "./screens/duplicates.js";
import { findScreen } from "./screens/find.js";
import { NAVIGATE, go } from "./nav.js";

const main = document.getElementById("main") as HTMLElement;
const top = document.getElementById("top") as HTMLElement;

let session: Session | null = null;

interface Screen {
  path: string;
  title: string;
  scope: string;
}

const SCREENS: Screen[] = [
  { path: "/", title: "Find", scope: "contacts.read" },
  { path: "/duplicates", title: "Duplicates", scope: "contacts.read" },
  { path: "/alerts", title: "Alerts", scope: "alerts.read" },
];

function header(current: Session) {
  const links = SCREENS.filter((screen) => current.may(screen.scope)).map((screen) =>
    h("li", {}, h("a", { href: screen.path, "data-nav": "" }, screen.title)),
  );
  fill(
    top,
    h("span", { class: "brand" }, "CRM"),
    h("nav", { "aria-label": "Screens" }, h("ul", {}, links)),
    h(
      "span",
      { class: "who" },
      `Signed in: ${current.caller.roles.join(", ")}`,
      h(
        "button",
        {
          type: "button",
          class: "link",
          onclick: () => {
            signOut();
            session = null;
            go("/");
          },
        },
        "Sign out",
      ),
    ),
  );
}

function signInScreen() {
  fill(top, h("span", { class: "brand" }, "CRM"));
  const token = h("input", { type: "password", name: "token", autocomplete: "off", required: true });
  const problem = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    {
      class: "card narrow",
      onsubmit: async (event: Event) => {
        event.preventDefault();
        problem.textContent = "";
        try {
          session = await signIn(token.value);
          await route();
        } catch (error) {
          problem.textContent = explain(error);
          token.focus();
        }
      },
    },
    h("h1", {}, "Sign in"),
    field("API key or token", token, "Kept for this tab only; closing it signs you out."),
    h("button", { type: "submit" }, "Sign in"),
    problem,
  );
  fill(main, form);
  token.focus();
}

async function route() {
  session ??= await resume();
  if (!session) return signInScreen();
  header(session);
  const path = location.pathname;
  const customer = path.match(/^\/customers\/([0-9a-f-]{36})$/);
  main.replaceChildren();
  if (customer) {
    await customerScreen(main, session, customer[1]);
  } else if (path === "/duplicates") {
    await duplicatesScreen(main, session);
  } else if (path === "/alerts") {
    await alertsScreen(main, session);
  } else if (session.may("contacts.read")) {
    findScreen(main, session);
  } else if (session.may("alerts.read")) {
    history.replaceState(null, "", "/alerts");
    await alertsScreen(main, session);
  } else {
    fill(main, h("p", {}, "Your role has no screen in this console."));
  }
  for (const link of top.querySelectorAll("a[data-nav]")) {
    const here = link.getAttribute("href") === path;
    if (here) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  main.focus({ preventScroll: true });
}

// Links inside the console move without a reload.
document.addEventListener("click", (event) => {
  const link = (event.target as Element).closest?.("a[href^='/']");
  if (!link || event.defaultPrevented || (event as MouseEvent).ctrlKey || (event as MouseEvent).metaKey) return;
  event.preventDefault();
  go(link.getAttribute("href") as string);
});
window.addEventListener("popstate", () => void route());
window.addEventListener(NAVIGATE, () => void route());
void route();
