// Find: type-ahead search over names (typos forgiven), emails, phones and
// organizations; and the call-centre screen pop, a look-up by phone number.
import type { Session } from "../api.js";
import { explain } from "../api.js";
import { announce, field, fill, h } from "../dom.js";
import type { Contact } from "../gen/crm/contacts/v1/contacts_pb.js";
import { go } from "../nav.js";

/** Wait this long after the last keystroke before asking (each answer but the latest is dropped anyway). */
const TYPING_PAUSE_MS = 50;

export function customerLine(contact: Contact) {
  const name = contact.displayName || `${contact.givenName} ${contact.familyName}`.trim() || "(no name)";
  const email = contact.emails[0]?.address;
  const phone = contact.phones[0]?.number;
  return h(
    "a",
    { href: `/customers/${contact.id}`, class: "result" },
    h("strong", {}, name),
    email ? h("span", {}, email) : null,
    phone ? h("span", {}, phone) : null,
  );
}

export function findScreen(main: HTMLElement, session: Session) {
  const query = h("input", { type: "search", name: "query", autocomplete: "off", spellcheck: "false" });
  const results = h("ol", { class: "results", "aria-label": "Customers found" });
  const problem = h("p", { class: "error", role: "alert" });
  let asked = 0;
  let timer: number | undefined;

  async function search() {
    const text = query.value.trim();
    const ask = ++asked;
    if (text.length < 2) {
      results.replaceChildren();
      return;
    }
    try {
      const found = await session.api.contacts.searchContacts({ query: text, pageSize: 10 });
      if (ask !== asked) return; // a later keystroke's answer wins
      problem.textContent = "";
      fill(
        results,
        found.results.map((result) => h("li", {}, customerLine(result.contact as Contact))),
      );
      announce(`${found.results.length} customers found`);
      // User Timing marks: what `npm run bench` reads (the last keystroke to the results shown).
      performance.mark("crm:search-shown", { detail: text });
      if (found.results.length === 0) fill(results, h("li", { class: "empty" }, "No customer matches."));
    } catch (error) {
      if (ask === asked) problem.textContent = explain(error);
    }
  }
  query.addEventListener("input", () => {
    performance.mark("crm:search-keystroke");
    window.clearTimeout(timer);
    timer = window.setTimeout(search, TYPING_PAUSE_MS);
  });

  const phone = h("input", { type: "tel", name: "phone", autocomplete: "off" });
  const lookupProblem = h("p", { class: "error", role: "alert" });
  const lookup = h(
    "form",
    {
      class: "inline",
      onsubmit: async (event: Event) => {
        event.preventDefault();
        lookupProblem.textContent = "";
        try {
          const contact = await session.api.contacts.lookupContact({ key: { case: "phone", value: phone.value } });
          go(`/customers/${contact.id}`);
        } catch (error) {
          lookupProblem.textContent = explain(error);
        }
      },
    },
    field("Caller's phone number", phone, "As the phone shows it, e.g. +44 20 7946 0958"),
    h("button", { type: "submit" }, "Open the caller"),
  );

  fill(
    main,
    h("h1", {}, "Find a customer"),
    h("section", { class: "card" }, field("Name, email, phone or organization", query), problem, results),
    h("section", { class: "card" }, h("h2", {}, "Screen pop"), lookup, lookupProblem),
  );
  query.focus();
}
