// The console's main paths in Chromium against the suite tests/suite.ts
// started and seeded. With CRM_SCREENSHOTS=1 the screens are saved to
// docs/console/ for the documentation.
import AxeBuilder from "@axe-core/playwright";
import { expect, test, type Page } from "@playwright/test";

const agentKey = () => process.env.CRM_AGENT_KEY as string;
const sreKey = () => process.env.CRM_SRE_KEY as string;

async function signIn(page: Page, key: string, accepted = true) {
  await page.goto("/");
  await page.getByLabel("API key or token").fill(key);
  await page.getByRole("button", { name: "Sign in" }).click();
  if (accepted) await expect(page.getByText(/^Signed in:/)).toBeVisible();
}

async function shot(page: Page, name: string) {
  if (process.env.CRM_SCREENSHOTS === "1") {
    await page.screenshot({ path: `../docs/console/${name}.png`, fullPage: true });
  }
}

// The page must run under the policy the gateway sets: any violation fails the test.
test.beforeEach(async ({ page }) => {
  page.on("console", (message) => {
    if (message.type() === "error" && /Content.Security.Policy/i.test(message.text())) {
      throw new Error(`CSP violation: ${message.text()}`);
    }
  });
});

test("an agent finds a customer by a misspelt name, opens them, and records a call", async ({ page }) => {
  await signIn(page, agentKey());
  await expect(page.getByRole("navigation", { name: "Screens" })).toContainText("Duplicates");
  await page.getByLabel("Name, email, phone or organization").fill("Katherin Jonson");
  const found = page.getByRole("list", { name: "Customers found" });
  await expect(found.getByRole("link").first()).toContainText("Katherine");
  await shot(page, "find");
  await found.getByRole("link", { name: /Katherine/ }).first().click();

  await expect(page.getByRole("heading", { level: 1 })).toHaveText("Katherine Johnson");
  const contact = page.getByRole("region", { name: "Contact" });
  await expect(contact).toContainText("katherine.johnson@example.org");
  await expect(contact).toContainText("mary.jackson");
  const glance = page.getByRole("region", { name: "At a glance" });
  await expect(glance).toContainText("$129.00");
  await expect(glance).toContainText("Invoice sent twice");
  const timeline = page.getByRole("list", { name: "Interactions, newest first" });
  await expect(timeline).toContainText("Orbital mechanics handbook");
  // The tier and why, and the segment and why (features follow the feeds within moments).
  await expect(page.getByRole("region", { name: "Service tier and score" })).toContainText(/Tiergold/);
  await expect(page.getByRole("region", { name: "Service tier and score" })).toContainText("revenue_365d[USD]");
  await expect(page.getByRole("region", { name: "Segments" })).toContainText("VIP customers");

  const record = page.getByRole("region", { name: "Record a call or note" });
  await record.getByLabel("Subject").fill("Called back about the double invoice");
  await record.getByLabel("Notes").fill("Refund promised within 5 days.");
  await record.getByRole("button", { name: "Record" }).click();
  await expect(timeline.getByRole("listitem").first()).toContainText("Called back about the double invoice");
  await expect(timeline.getByRole("listitem").first()).toContainText("call");
  await shot(page, "customer");
});

test("a caller's phone number opens their record (screen pop)", async ({ page }) => {
  await signIn(page, agentKey());
  await page.getByLabel("Caller's phone number").fill("(202) 555-0143");
  await page.getByRole("button", { name: "Open the caller" }).click();
  await expect(page).toHaveURL(new RegExp(`/customers/${process.env.CRM_KATHERINE}$`));
  await expect(page.getByRole("heading", { level: 1 })).toHaveText("Katherine Johnson");

  // A number nobody has is said so, not a crash.
  await page.goto("/");
  await page.getByLabel("Caller's phone number").fill("+1 202 555 0000");
  await page.getByRole("button", { name: "Open the caller" }).click();
  await expect(page.getByRole("alert").filter({ hasText: "Not found" })).toBeVisible();
});

test("a role that may only read is not offered what it may not do", async ({ page }) => {
  await signIn(page, process.env.CRM_ANALYST_KEY as string);
  await page.goto(`/customers/${process.env.CRM_KATHERINE}`);
  await expect(page.getByRole("heading", { level: 1 })).toHaveText("Katherine Johnson");
  await expect(page.getByRole("list", { name: "Interactions, newest first" })).toContainText("Orbital mechanics handbook");
  await expect(page.getByRole("region", { name: "Record a call or note" })).toHaveCount(0);
  await expect(page.getByRole("button", { name: "Edit" })).toHaveCount(0);
  await page.goto("/duplicates");
  await expect(page.getByRole("list", { name: "Likely duplicates" })).toContainText("Dorothy Vaughan");
  await expect(page.getByRole("button", { name: /Compare/ })).toHaveCount(0);
});

test("two records of one person are merged from the duplicates queue", async ({ page }) => {
  await signIn(page, agentKey());
  await page.getByRole("navigation", { name: "Screens" }).getByRole("link", { name: "Duplicates" }).click();
  const queue = page.getByRole("list", { name: "Likely duplicates" });
  await expect(queue).toContainText("Dorothy Vaughan");
  await queue.getByRole("button", { name: /Compare Dorothy/ }).first().click();
  const compare = page.getByRole("region", { name: "Compare and merge" });
  await expect(compare).toContainText("dvaughan@example.org");
  // Keep the first record, with the second one's spelling of the name.
  await compare.getByRole("row", { name: /Family name/ }).getByLabel(/Vaughn/).check();
  await compare.getByRole("row", { name: /Display name/ }).getByLabel(/Vaughn/).check();
  await shot(page, "duplicates");
  await compare.getByRole("button", { name: "Merge" }).click();
  const merged = page.getByRole("region", { name: "Merged" });
  await expect(merged).toBeVisible();
  await expect(merged).toContainText("Dorothy Vaughn");
  await expect(queue).not.toContainText("Dorothy");

  // The import's flagged row: reviewed, it leaves the list.
  const review = page.getByRole("list", { name: "Flagged by imports" });
  await expect(review).toContainText("Chris Darden");
  await review.getByRole("button", { name: "Chris Darden is not a duplicate" }).click();
  await expect(review).not.toContainText("Chris Darden");
  await page.reload();
  await expect(page.getByRole("list", { name: "Flagged by imports" })).toContainText("None waiting for review");
});

test("the SRE role sees the firing alert and is refused customer data, with the reason", async ({ page }) => {
  await signIn(page, sreKey());
  const nav = page.getByRole("navigation", { name: "Screens" });
  await expect(nav.getByRole("link", { name: "Alerts" })).toBeVisible();
  await expect(nav.getByRole("link", { name: "Find" })).toHaveCount(0);
  await expect(page).toHaveURL(/\/alerts$/);
  const firing = page.getByRole("region", { name: "Firing" });
  await expect(firing).toContainText("ComplaintNeedsCallback");
  await expect(firing).toContainText("A customer complained");
  // The objective: 3 of 4 web payments were good (75% against 90%).
  const objectives = page.getByRole("region", { name: "Service-level objectives" });
  await expect(objectives).toContainText("Web payments under three minutes");
  await expect(objectives).toContainText("75.00%");
  await shot(page, "alerts");

  await page.goto(`/customers/${process.env.CRM_KATHERINE}`);
  await expect(page.getByRole("alert")).toContainText("Your role may not do this");
  await expect(page.getByText("Katherine")).toHaveCount(0);
});

test("an edit's wrong field is explained at the field; the cap is checked before a message", async ({ page }) => {
  await signIn(page, agentKey());
  await page.goto(`/customers/${process.env.CRM_KATHERINE}`);
  const contact = page.getByRole("region", { name: "Contact" });
  await contact.getByRole("button", { name: "Edit" }).click();
  await contact.getByLabel("Weekly cap (messages)").fill("-3");
  await contact.getByLabel("Owner").fill("dorothy.vaughan");
  await contact.getByRole("button", { name: "Save" }).click();
  const cap = contact.getByLabel("Weekly cap (messages)");
  await expect(cap).toHaveAttribute("aria-invalid", "true");
  await expect(contact.locator("#max_contacts_per_week-error")).not.toBeEmpty();
  await expect(cap).toBeFocused();
  await cap.fill("2");
  await contact.getByRole("button", { name: "Save" }).click();
  await expect(contact).toContainText("dorothy.vaughan");
  await expect(contact).toContainText("2 messages");

  await contact.getByLabel("Outbound channel").selectOption({ label: "phone" });
  await contact.getByRole("button", { name: "Check the cap" }).click();
  await expect(contact.getByRole("status")).toContainText(/Allowed|Not now/);
});

test("a JWT from the identity provider signs in as the roles it names", async ({ page }) => {
  await signIn(page, process.env.CRM_AGENT_JWT as string);
  await expect(page.getByText(/^Signed in: agent/)).toBeVisible();
  await page.getByLabel("Caller's phone number").fill("+1 202 555 0143");
  await page.getByRole("button", { name: "Open the caller" }).click();
  await expect(page.getByRole("heading", { level: 1 })).toHaveText("Katherine Johnson");
});

test("the main screens pass axe-core's WCAG 2.1 A and AA checks", async ({ page }) => {
  const check = async (screen: string) => {
    const found = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]).analyze();
    const problems = found.violations.map((violation) => `${screen}: ${violation.id} (${violation.nodes.map((node) => node.target.join(" ")).join(", ")})`);
    expect(problems).toEqual([]);
  };
  await page.goto("/");
  await check("sign in");
  await signIn(page, agentKey());
  await page.getByLabel("Name, email, phone or organization").fill("Katherine");
  await expect(page.getByRole("list", { name: "Customers found" }).getByRole("link").first()).toBeVisible();
  await check("find");
  await page.goto(`/customers/${process.env.CRM_KATHERINE}`);
  await expect(page.getByRole("region", { name: "Service tier and score" })).toContainText("gold");
  await expect(page.getByRole("region", { name: "Audit trail" })).not.toContainText("Loading");
  await check("customer");
  await page.goto("/duplicates");
  await expect(page.getByRole("heading", { name: "Flagged by imports" })).toBeVisible();
  await check("duplicates");
  await page.goto("/alerts");
  await expect(page.getByRole("region", { name: "Firing" })).toContainText("ComplaintNeedsCallback");
  await check("alerts");
});

test("a wrong key is refused at sign-in with the reason", async ({ page }) => {
  await signIn(page, "crm_not_a_real_key_0000000000", false);
  await expect(page.getByRole("alert")).toContainText("did not accept your key");
});
