// The customer: who they are and how to reach them, their tier and why,
// their segments and next best offers, the single customer view, the
// timeline, the audit trail; and what front-line staff do while on the phone:
// record the call, edit the contact, check the contact-frequency cap.
import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { explain, fieldErrors, type Session } from "../api.js";
import { announce, field, fill, h } from "../dom.js";
import { ConsentChannel, ConsentStatus, LifecycleStage, RelationshipType, type Contact } from "../gen/crm/contacts/v1/contacts_pb.js";
import {
  Channel,
  Direction,
  InteractionSchema,
  Kind,
  type Interaction,
} from "../gen/crm/interactions/v1/interactions_pb.js";
import { money, named, when } from "../format.js";
import { facts, section } from "./section.js";

export async function customerScreen(main: HTMLElement, session: Session, id: string) {
  let contact: Contact;
  try {
    contact = await session.api.contacts.getContact({ id });
  } catch (error) {
    fill(main, h("h1", {}, "Customer"), h("p", { class: "error", role: "alert" }, explain(error)));
    return;
  }
  const name = contact.displayName || `${contact.givenName} ${contact.familyName}`.trim() || "(no name)";
  document.title = `${name} · CRM console`;
  const timeline = timelineSection(session, id);
  fill(
    main,
    h("h1", {}, name),
    h(
      "div",
      { class: "columns" },
      h(
        "div",
        {},
        identityCard(session, contact),
        section(session, "segments.read", "Service tier and score", (body) => score(session, id, body)),
        section(session, "segments.read", "Segments", (body) => segments(session, id, body)),
        section(session, "segments.read", "Next best offers", (body) => offers(session, id, body)),
        section(session, "interactions.read", "At a glance", (body) => summary(session, id, body)),
        section(session, "contacts.read", "Relationships", (body) => relationships(session, id, body)),
      ),
      h(
        "div",
        {},
        session.may("interactions.write") ? recordCard(session, id, () => timeline.reload()) : null,
        timeline.card,
        section(session, "contacts.read", "Audit trail", (body) => audit(session, id, body)),
      ),
    ),
  );
  announce(`${name} opened`);
  // What `npm run bench` reads: the customer on screen, from the navigation's start.
  performance.mark("crm:customer-shown");
}

function identityCard(session: Session, contact: Contact) {
  const body = h("div", {});
  const show = (current: Contact) =>
    fill(
      body,
      facts([
        ["Stage", named(LifecycleStage, current.lifecycleStage)],
        ["Owner", current.owner || "—"],
        ["Emails", current.emails.map((email) => email.address).join(", ") || "—"],
        ["Phones", current.phones.map((phone) => phone.number).join(", ") || "—"],
        [
          "Address",
          current.addresses
            .map((address) => [address.lines.join(", "), address.locality, address.postalCode, address.countryCode]
              .filter(Boolean)
              .join(", "))
            .join("; ") || "—",
        ],
        ["Born", current.birthDate ? `${current.birthDate.year}-${pad(current.birthDate.month)}-${pad(current.birthDate.day)}` : "—"],
        ["Tags", current.tags.join(", ") || "—"],
        [
          "Consents",
          current.consents.map((consent) => `${named(ConsentChannel, consent.channel)}: ${named(ConsentStatus, consent.status)}`).join(", ") ||
            "—",
        ],
        ["Weekly cap", current.maxContactsPerWeek ? `${current.maxContactsPerWeek} messages` : "none"],
        ["Needs review", current.needsReview ? "yes: flagged as a possible duplicate" : "no"],
      ]),
      session.may("contacts.write")
        ? h("button", { type: "button", onclick: () => fill(body, editForm(session, current, show)) }, "Edit")
        : null,
      session.may("interactions.read") ? frequencyCheck(session, current.id) : null,
    );
  show(contact);
  return h("section", { class: "card", "aria-label": "Contact" }, h("h2", {}, "Contact"), body);
}

function pad(value: number) {
  return String(value).padStart(2, "0");
}

/** The contact's editable names, stage and owner; errors shown at their field. */
function editForm(session: Session, contact: Contact, done: (contact: Contact) => void) {
  const inputs: Record<string, HTMLInputElement> = {
    given_name: h("input", { name: "given_name", value: contact.givenName }),
    family_name: h("input", { name: "family_name", value: contact.familyName }),
    display_name: h("input", { name: "display_name", value: contact.displayName }),
    owner: h("input", { name: "owner", value: contact.owner }),
    max_contacts_per_week: h("input", {
      name: "max_contacts_per_week",
      type: "number",
      min: 0,
      value: contact.maxContactsPerWeek,
    }),
  };
  const labels: Record<string, string> = {
    given_name: "Given name",
    family_name: "Family name",
    display_name: "Display name",
    owner: "Owner",
    max_contacts_per_week: "Weekly cap (messages)",
  };
  const errors: Record<string, HTMLElement> = {};
  const rows = Object.entries(inputs).map(([key, input]) => {
    errors[key] = h("small", { class: "error", id: `${key}-error` });
    input.setAttribute("aria-describedby", `${key}-error`);
    return h("div", {}, field(labels[key], input), errors[key]);
  });
  const problem = h("p", { class: "error", role: "alert" });
  // The server's checks are the ones that count: each refusal is shown at its field.
  return h(
    "form",
    {
      novalidate: true,
      onsubmit: async (event: Event) => {
        event.preventDefault();
        for (const [key, element] of Object.entries(errors)) {
          element.textContent = "";
          inputs[key].removeAttribute("aria-invalid");
        }
        problem.textContent = "";
        try {
          const updated = await session.api.contacts.updateContact({
            contact: {
              ...contact,
              givenName: inputs.given_name.value,
              familyName: inputs.family_name.value,
              displayName: inputs.display_name.value,
              owner: inputs.owner.value,
              maxContactsPerWeek: Number(inputs.max_contacts_per_week.value || 0),
            },
            updateMask: { paths: Object.keys(inputs) },
          });
          announce("Contact saved");
          done(updated);
        } catch (error) {
          const wrong = fieldErrors(error);
          let first: HTMLInputElement | null = null;
          for (const [path, reason] of wrong) {
            const key = Object.keys(inputs).find((name) => path === name || path.endsWith(`.${name}`));
            if (!key) continue;
            errors[key].textContent = reason;
            inputs[key].setAttribute("aria-invalid", "true");
            first ??= inputs[key];
          }
          if (first) first.focus();
          else problem.textContent = explain(error);
        }
      },
    },
    rows,
    h("button", { type: "submit" }, "Save"),
    h("button", { type: "button", class: "link", onclick: () => done(contact) }, "Cancel"),
    problem,
  );
}

/** Before an outbound message: may it go out now? */
function frequencyCheck(session: Session, id: string) {
  const channel = h(
    "select",
    { name: "channel" },
    [Channel.EMAIL, Channel.PHONE, Channel.SMS, Channel.POST].map((value) =>
      h("option", { value }, named(Channel, value)),
    ),
  );
  const answer = h("p", { role: "status" });
  return h(
    "form",
    {
      class: "inline",
      onsubmit: async (event: Event) => {
        event.preventDefault();
        try {
          const check = await session.api.interactions.checkContactFrequency({
            contactId: id,
            channel: Number(channel.value) as Channel,
          });
          answer.textContent = check.allowed
            ? `Allowed (${check.outboundLast7Days} outbound in 7 days)`
            : `Not now: ${check.reason.replaceAll("_", " ")}${check.nextAllowedTime ? `, next ${when(check.nextAllowedTime)}` : ""}`;
        } catch (error) {
          answer.textContent = explain(error);
        }
      },
    },
    field("Outbound channel", channel),
    h("button", { type: "submit" }, "Check the cap"),
    answer,
  );
}

async function score(session: Session, id: string, body: HTMLElement) {
  const scored = await session.api.segmentation.getContactScore({ contactId: id });
  fill(
    body,
    facts([
      ["Tier", scored.tier || "—"],
      ["Score", scored.score.toFixed(1)],
      ["Queue priority", String(scored.queuePriority)],
    ]),
    h(
      "table",
      {},
      h("caption", {}, "What makes the score"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Feature"), h("th", { scope: "col" }, "Value"), h("th", { scope: "col" }, "Points"))),
      h(
        "tbody",
        {},
        scored.contributions.map((given) =>
          h(
            "tr",
            {},
            h("td", {}, given.key ? `${given.feature}[${given.key}]` : given.feature),
            h("td", {}, given.value),
            h("td", {}, `${given.points >= 0 ? "+" : ""}${given.points.toFixed(1)}${given.capped ? " (capped)" : ""}`),
          ),
        ),
      ),
    ),
  );
}

async function segments(session: Session, id: string, body: HTMLElement) {
  const found = await session.api.segmentation.getContactSegments({ contactId: id });
  if (found.segments.length === 0) return fill(body, h("p", { class: "muted" }, "In no segment."));
  fill(
    body,
    h(
      "ul",
      {},
      found.segments.map((segment) =>
        h(
          "li",
          {},
          h("strong", {}, segment.name),
          ` since ${when(segment.since)}`,
          segment.why.length ? h("small", { class: "why" }, ` because ${segment.why.map((why) => `${why.feature} = ${why.value}`).join(", ")}`) : null,
        ),
      ),
    ),
  );
}

async function offers(session: Session, id: string, body: HTMLElement) {
  const found = await session.api.segmentation.getNextBestOffers({ contactId: id, limit: 3 });
  if (found.heldBackReason) return fill(body, h("p", {}, `Held back: ${found.heldBackReason}`));
  if (found.offers.length === 0) return fill(body, h("p", { class: "muted" }, "No offer yet."));
  fill(body, h("ol", {}, found.offers.map((offer) => h("li", {}, h("strong", {}, offer.sku), ` — ${offer.reason}`))));
}

async function summary(session: Session, id: string, body: HTMLElement) {
  const seen = await session.api.interactions.getContactSummary({ contactId: id });
  const year = seen.windows.find((window) => window.days === 365);
  const counts = year ? Object.entries(year.byKind).map(([kind, count]) => `${count} ${kind.replace(/^KIND_/, "").toLowerCase().replaceAll("_", " ")}`).join(", ") : "";
  fill(
    body,
    facts([
      ["First contact", when(seen.firstInteractionTime)],
      ["Last contact", when(seen.lastInteractionTime)],
      ["Last 365 days", counts || "nothing"],
      ["Revenue (365 days)", year ? money(year.revenue) : "—"],
      ["Open invoices", `${seen.openInvoices} (${money(seen.openAmount)})`],
      ["Overdue invoices", `${seen.overdueInvoices} (${money(seen.overdueAmount)})`],
      ["Last complaint", seen.lastComplaint ? `${when(seen.lastComplaint.occurredAt)}: ${seen.lastComplaint.subject || "no subject"}` : "none"],
      ["Recurring problems", seen.openPainPoints.join(", ") || "none"],
      ["Sentiment", seen.averageSentiment === undefined ? "—" : seen.averageSentiment.toFixed(2)],
    ]),
  );
}

async function relationships(session: Session, id: string, body: HTMLElement) {
  const found = await session.api.contacts.listRelationships({ parent: { case: "contactId", value: id } });
  if (found.relationships.length === 0) return fill(body, h("p", { class: "muted" }, "None recorded."));
  fill(
    body,
    h(
      "ul",
      {},
      found.relationships.map((relationship) => {
        const target = relationship.target;
        const other =
          target.case === "otherContactId"
            ? h("a", { href: `/customers/${target.value === id ? relationship.contactId : target.value}` }, "a contact")
            : `organization ${target.value ?? ""}`;
        return h("li", {}, relationship.customType || named(RelationshipType, relationship.type), " — ", other);
      }),
    ),
  );
}

function interactionItem(interaction: Interaction) {
  return h(
    "li",
    { class: "event" },
    h("time", {}, when(interaction.occurredAt)),
    h("strong", {}, named(Kind, interaction.kind)),
    ` by ${named(Channel, interaction.channel)}`,
    interaction.subject ? h("span", {}, ` — ${interaction.subject}`) : null,
    interaction.amount ? h("span", {}, ` ${money([interaction.amount])}`) : null,
    interaction.notes ? h("p", { class: "notes" }, interaction.notes) : null,
  );
}

/** The timeline: newest first, filtered by kind, more pages as it scrolls. */
function timelineSection(session: Session, id: string) {
  const list = h("ol", { class: "timeline", "aria-label": "Interactions, newest first" });
  const more = h("button", { type: "button", class: "link" }, "Show older");
  const problem = h("p", { class: "error", role: "alert" });
  const filter = h(
    "select",
    { name: "kind" },
    h("option", { value: "" }, "every kind"),
    Object.values(Kind)
      .filter((value): value is Kind => typeof value === "number" && value !== Kind.UNSPECIFIED)
      .map((value) => h("option", { value }, named(Kind, value))),
  );
  let token = "";
  let loading = false;

  async function page(first: boolean) {
    if (loading) return;
    loading = true;
    try {
      const kinds = filter.value ? [Number(filter.value) as Kind] : [];
      const found = await session.api.interactions.listInteractions({
        contactId: id,
        pageSize: 20,
        pageToken: first ? "" : token,
        kinds,
      });
      if (first) list.replaceChildren();
      list.append(...found.interactions.map(interactionItem));
      if (first && found.interactions.length === 0) list.append(h("li", { class: "empty" }, "Nothing on the timeline yet."));
      token = found.nextPageToken;
      more.hidden = !token;
      problem.textContent = "";
    } catch (error) {
      problem.textContent = explain(error);
    } finally {
      loading = false;
    }
  }
  more.addEventListener("click", () => void page(false));
  filter.addEventListener("change", () => void page(true));
  // Endless scrolling: the next page comes when the end of the list shows.
  new IntersectionObserver((entries) => {
    if (entries.some((entry) => entry.isIntersecting) && token) void page(false);
  }).observe(more);

  const card = session.may("interactions.read")
    ? h("section", { class: "card", "aria-label": "Timeline" }, h("h2", {}, "Timeline"), field("Show", filter), list, more, problem)
    : null;
  if (card) void page(true);
  return { card, reload: () => page(true) };
}

/** Record a call or a note on the timeline. */
function recordCard(session: Session, id: string, recorded: () => Promise<void>) {
  const kind = h(
    "select",
    { name: "kind" },
    h("option", { value: Kind.CALL }, "call"),
    h("option", { value: Kind.NOTE }, "note"),
    h("option", { value: Kind.COMPLAINT }, "complaint"),
  );
  const direction = h(
    "select",
    { name: "direction" },
    h("option", { value: Direction.INBOUND }, "inbound"),
    h("option", { value: Direction.OUTBOUND }, "outbound"),
  );
  const subject = h("input", { name: "subject", maxlength: 200 });
  const notes = h("textarea", { name: "notes", rows: 3 });
  const problem = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    {
      onsubmit: async (event: Event) => {
        event.preventDefault();
        problem.textContent = "";
        const chosen = Number(kind.value) as Kind;
        try {
          await session.api.interactions.recordInteraction({
            interaction: create(InteractionSchema, {
              contactId: id,
              kind: chosen,
              channel: chosen === Kind.NOTE ? Channel.UNSPECIFIED : Channel.PHONE,
              direction: Number(direction.value) as Direction,
              occurredAt: timestampNow(),
              subject: subject.value,
              notes: notes.value,
              source: "console",
              externalId: crypto.randomUUID(),
            }),
          });
          subject.value = "";
          notes.value = "";
          announce(`${named(Kind, chosen)} recorded`);
          await recorded();
        } catch (error) {
          problem.textContent = explain(error);
        }
      },
    },
    h("div", { class: "inline" }, field("Kind", kind), field("Direction", direction)),
    field("Subject", subject),
    field("Notes", notes),
    h("button", { type: "submit" }, "Record"),
    problem,
  );
  return h("section", { class: "card", "aria-label": "Record a call or note" }, h("h2", {}, "Record a call or note"), form);
}

async function audit(session: Session, id: string, body: HTMLElement) {
  const found = await session.api.contacts.listAuditEvents({ parent: { case: "contactId", value: id }, pageSize: 20 });
  if (found.auditEvents.length === 0) return fill(body, h("p", { class: "muted" }, "No change recorded."));
  fill(
    body,
    h(
      "ol",
      { class: "timeline" },
      found.auditEvents.map((event) =>
        h(
          "li",
          { class: "event" },
          h("time", {}, when(event.time)),
          h("strong", {}, event.action),
          ` by ${event.actor}`,
          event.changes.length ? h("small", {}, ` (${event.changes.map((change) => change.field).join(", ")})`) : null,
        ),
      ),
    ),
  );
}
