// A card of a screen that loads on its own: the rest of the screen does not
// wait for it, and its failure is explained inside it.
import { explain, type Session } from "../api.js";
import { fill, h } from "../dom.js";

/** A card titled `title`, offered only when the caller has `scope`; `load` fills its body. */
export function section(
  session: Session,
  scope: string,
  title: string,
  load: (body: HTMLElement) => Promise<void>,
): HTMLElement | null {
  if (!session.may(scope)) return null;
  const heading = h("h2", {}, title);
  const body = h("div", { class: "body", "aria-busy": "true" }, h("p", { class: "muted" }, "Loading…"));
  const card = h("section", { class: "card", "aria-label": title }, heading, body);
  load(body)
    .catch((error) => fill(body, h("p", { class: "error", role: "alert" }, explain(error))))
    .finally(() => body.removeAttribute("aria-busy"));
  return card;
}

/** A two-column list of facts. */
export function facts(pairs: [string, string | Node | null | undefined][]) {
  return h(
    "dl",
    { class: "facts" },
    pairs.flatMap(([name, value]) => [h("dt", {}, name), h("dd", {}, value ?? "—")]),
  );
}
