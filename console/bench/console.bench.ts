// The console's two speed targets, measured in the browser against a running
// install (e.g. a million contacts loaded by `crm bench --contacts 1000000`):
// - the customer screen's first paint: a cold open of /customers/<id> (the
//   page, its script, /config.json, GetCaller, GetContact) to the customer on
//   screen (the `crm:customer-shown` mark), and the browser's own
//   first-contentful-paint;
// - search: from the last keystroke of a misspelt family name, typed at 80 ms
//   a key, to its results on screen (`crm:search-keystroke` to `crm:search-shown`).
// CRM_CONSOLE_URL=http://127.0.0.1:50080 CRM_GATEWAY=127.0.0.1:50051 CRM_API_KEY=... npm run bench
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { expect, test } from "@playwright/test";
import { ContactsService } from "../src/gen/crm/contacts/v1/contacts_pb.js";

const SAMPLES = Number(process.env.CRM_BENCH_SAMPLES ?? 40);

function summary(name: string, values: number[]) {
  const sorted = values.filter((value) => Number.isFinite(value)).sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
  const line = `${name}: n=${sorted.length} p50 ${at(0.5).toFixed(1)} ms, p95 ${at(0.95).toFixed(1)} ms, max ${sorted[sorted.length - 1].toFixed(1)} ms`;
  console.log(line);
  return at(0.95);
}

test("the customer screen's first paint and search after the last keystroke", async ({ page }) => {
  const key = process.env.CRM_API_KEY as string;
  const bearer: Interceptor = (next) => (request) => {
    request.header.set("authorization", `Bearer ${key}`);
    return next(request);
  };
  const contacts = createClient(
    ContactsService,
    createGrpcTransport({ baseUrl: `http://${process.env.CRM_GATEWAY}`, interceptors: [bearer] }),
  );
  // Contacts spread over the whole base: the first changed at or after a random moment
  // between the oldest contact's last change and now.
  const oldest = (await contacts.listContacts({ pageSize: 1 })).contacts[0];
  const from = Number(oldest.updateTime?.seconds ?? 0n);
  const to = Math.floor(Date.now() / 1000);
  const picked: { id: string; family: string }[] = [];
  while (picked.length < SAMPLES) {
    const seconds = BigInt(Math.floor(from + Math.random() * (to - from)));
    const page = await contacts.listContacts({ pageSize: 20, updatedSince: { seconds, nanos: 0 } });
    const one = page.contacts.find((contact) => contact.familyName.length >= 4);
    if (one && !picked.some((known) => known.id === one.id)) picked.push({ id: one.id, family: one.familyName });
  }
  await page.addInitScript((token) => sessionStorage.setItem("crm.console.token", token), key);

  const shown: number[] = [];
  const painted: number[] = [];
  for (const { id } of picked) {
    await page.goto(`/customers/${id}`);
    await page.waitForFunction(() => performance.getEntriesByName("crm:customer-shown").length > 0);
    const [mark, paint] = await page.evaluate(() => [
      performance.getEntriesByName("crm:customer-shown")[0].startTime,
      performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? NaN,
    ]);
    shown.push(mark);
    painted.push(paint);
  }

  await page.goto("/");
  const box = page.getByLabel("Name, email, phone or organization");
  const searched: number[] = [];
  for (const { family } of picked) {
    // A typo: the second letter doubled.
    const query = family.slice(0, 2) + family.slice(1);
    await box.fill("");
    await page.evaluate(() => performance.clearMarks());
    await box.pressSequentially(query, { delay: 80 });
    await page.waitForFunction(
      (text) => performance.getEntriesByName("crm:search-shown").some((entry) => (entry as PerformanceMark).detail === text),
      query,
    );
    searched.push(
      await page.evaluate((text) => {
        const keystrokes = performance.getEntriesByName("crm:search-keystroke");
        const last = keystrokes[keystrokes.length - 1].startTime;
        const done = performance.getEntriesByName("crm:search-shown").find((entry) => (entry as PerformanceMark).detail === text);
        return (done as PerformanceMark).startTime - last;
      }, query),
    );
  }
  summary("customer screen: navigation start to the customer shown", shown);
  summary("customer screen: first contentful paint", painted);
  summary("search: last keystroke to results shown", searched);
  expect(shown.length).toBe(picked.length);
});
