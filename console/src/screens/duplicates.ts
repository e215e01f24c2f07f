// Clean: the duplicates queue from the whole-base scan (clusters first), a
// side-by-side merge choosing the surviving value of each field, and the
// contacts an import flagged for review.
import { explain, type Session } from "../api.js";
import { announce, fill, h } from "../dom.js";
import { LifecycleStage, type Contact, type DuplicatePair } from "../gen/crm/contacts/v1/contacts_pb.js";
import { named } from "../format.js";
import { customerLine } from "./find.js";

/** The single-valued fields a merge lets the person choose (MergeContactsRequest.field_sources). */
const CHOSEN: [string, string, (contact: Contact) => string][] = [
  ["given_name", "Given name", (contact) => contact.givenName],
  ["family_name", "Family name", (contact) => contact.familyName],
  ["display_name", "Display name", (contact) => contact.displayName],
  [
    "birth_date",
    "Birth date",
    (contact) => (contact.birthDate ? `${contact.birthDate.year}-${contact.birthDate.month}-${contact.birthDate.day}` : ""),
  ],
  ["lifecycle_stage", "Stage", (contact) => named(LifecycleStage, contact.lifecycleStage)],
  ["owner", "Owner", (contact) => contact.owner],
  ["max_contacts_per_week", "Weekly cap", (contact) => String(contact.maxContactsPerWeek || "")],
];

/** Lists carried over whole (union), shown for the record. */
const UNIONED: [string, (contact: Contact) => string][] = [
  ["Emails", (contact) => contact.emails.map((email) => email.address).join(", ")],
  ["Phones", (contact) => contact.phones.map((phone) => phone.number).join(", ")],
  ["Tags", (contact) => contact.tags.join(", ")],
];

function nameOf(contact: Contact) {
  return contact.displayName || `${contact.givenName} ${contact.familyName}`.trim() || contact.id;
}

export async function duplicatesScreen(main: HTMLElement, session: Session) {
  const queue = h("ol", { class: "results", "aria-label": "Likely duplicates" });
  const merge = h("div", {});
  fill(
    main,
    h("h1", {}, "Duplicates"),
    h(
      "section",
      { class: "card" },
      h("h2", {}, "Likely duplicates"),
      h("p", { class: "muted" }, "From a scan of the whole base; groups of more than two come first."),
      queue,
    ),
    merge,
  );
  const contacts = new Map<string, Contact>();
  const known = async (id: string) => {
    if (!contacts.has(id)) contacts.set(id, await session.api.contacts.getContact({ id }));
    return contacts.get(id) as Contact;
  };
  try {
    const found = await session.api.contacts.findDuplicates({ pageSize: 50 });
    const pairs = [...found.pairs];
    // Clusters first: a pair inside a group of three or more leads.
    const inCluster = new Set(found.clusters.filter((cluster) => cluster.contactIds.length > 2).flatMap((cluster) => cluster.contactIds));
    pairs.sort((a, b) => Number(inCluster.has(b.contactId)) - Number(inCluster.has(a.contactId)) || b.score - a.score);
    if (pairs.length === 0) return fill(queue, h("li", { class: "empty" }, "No likely duplicates."));
    const rows = await Promise.all(
      pairs.map(async (pair) => {
        const [one, other] = await Promise.all([known(pair.contactId), known(pair.otherContactId)]);
        return h(
          "li",
          { class: "pair" },
          h("span", {}, nameOf(one), " and ", nameOf(other)),
          h("small", {}, ` score ${pair.score.toFixed(2)}: ${pair.reasons.map((reason) => reason.signal).join(", ")}`),
          session.may("contacts.write")
            ? h("button", { type: "button", onclick: () => compare(session, merge, pair, one, other) }, `Compare ${nameOf(one)}`)
            : null,
        );
      }),
    );
    fill(queue, rows);
  } catch (error) {
    fill(queue, h("li", { class: "error", role: "alert" }, explain(error)));
  }
  if (session.may("contacts.read")) main.append(await flagged(session));
}

function compare(session: Session, place: HTMLElement, pair: DuplicatePair, one: Contact, other: Contact) {
  const sides = [one, other];
  const problem = h("p", { class: "error", role: "alert" });
  const survivor = (index: number) =>
    h("input", { type: "radio", name: "survivor", value: sides[index].id, checked: index === 0, "aria-label": `Keep ${nameOf(sides[index])}'s record` });
  const rows = CHOSEN.map(([key, label, read]) =>
    h(
      "tr",
      {},
      h("th", { scope: "row" }, label),
      sides.map((contact, index) =>
        h(
          "td",
          {},
          h(
            "label",
            {},
            h("input", { type: "radio", name: key, value: contact.id, checked: index === 0 || (!read(one) && index === 1) }),
            ` ${read(contact) || "—"}`,
          ),
        ),
      ),
    ),
  );
  const unioned = UNIONED.map(([label, read]) =>
    h("tr", {}, h("th", { scope: "row" }, label), sides.map((contact) => h("td", {}, read(contact) || "—"))),
  );
  const form = h(
    "form",
    {
      onsubmit: async (event: Event) => {
        event.preventDefault();
        const data = new FormData(form);
        const keep = String(data.get("survivor"));
        const fieldSources: Record<string, string> = {};
        for (const [key] of CHOSEN) fieldSources[key] = String(data.get(key));
        try {
          const merged = await session.api.contacts.mergeContacts({
            survivorId: keep,
            loserIds: sides.map((contact) => contact.id).filter((id) => id !== keep),
            fieldSources,
            etag: sides.find((contact) => contact.id === keep)?.etag ?? "",
          });
          const kept = merged.contact as Contact;
          fill(place, h("section", { class: "card", "aria-label": "Merged" }, h("h2", {}, "Merged"), h("p", {}, "The records are one now: "), customerLine(kept)));
          announce("Merged");
          document.querySelectorAll("li.pair").forEach((row) => {
            if (row.textContent?.includes(nameOf(one)) && row.textContent.includes(nameOf(other))) row.remove();
          });
        } catch (error) {
          problem.textContent = explain(error);
        }
      },
    },
    h(
      "table",
      { class: "compare" },
      h("caption", {}, `Score ${pair.score.toFixed(2)}: choose the value to keep in each row`),
      h(
        "thead",
        {},
        h("tr", {}, h("td", {}), sides.map((contact, index) => h("th", { scope: "col" }, h("label", {}, survivor(index), ` Keep ${nameOf(contact)}'s record`)))),
      ),
      h("tbody", {}, rows, unioned),
    ),
    h("p", { class: "muted" }, "Emails, phones, addresses, tags and ids of both are kept."),
    h("button", { type: "submit" }, "Merge"),
    problem,
  );
  fill(place, h("section", { class: "card", "aria-label": "Compare and merge" }, h("h2", {}, "Compare and merge"), form));
  (form.querySelector("input") as HTMLInputElement).focus();
}

/** Contacts an import created although they likely duplicate another, until someone reviews them. */
async function flagged(session: Session) {
  const list = h("ol", { class: "results", "aria-label": "Flagged by imports" });
  const card = h("section", { class: "card" }, h("h2", {}, "Flagged by imports"), list);
  try {
    const found = await session.api.contacts.listContacts({ needsReview: true, pageSize: 100 });
    const rows = found.contacts.map((contact) => {
      const row = h("li", {}, customerLine(contact));
      if (session.may("contacts.write")) {
        const reviewed = h("button", { type: "button", class: "link" }, `${nameOf(contact)} is not a duplicate`);
        reviewed.addEventListener("click", async () => {
          try {
            await session.api.contacts.updateContact({
              contact: { id: contact.id, etag: contact.etag, needsReview: false },
              updateMask: { paths: ["needs_review"] },
            });
            row.remove();
            announce(`${nameOf(contact)} marked reviewed`);
          } catch (error) {
            reviewed.replaceWith(explain(error));
          }
        });
        row.append(reviewed);
      }
      return row;
    });
    fill(list, rows.length ? rows : h("li", { class: "empty" }, "None waiting for review."));
  } catch (error) {
    fill(list, h("li", { class: "error" }, explain(error)));
  }
  return card;
}
