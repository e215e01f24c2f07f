// Starts the suite as an operator would (`crm up`, a private PostgreSQL, the
// console served from ./dist), seeds it through the gateway with the admin
// key, and hands the tests where it is and which keys to use (environment
// variables, which Playwright passes on to the tests).
import { spawn, type ChildProcess } from "node:child_process";
import { generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { AlertingService } from "../src/gen/crm/alerting/v1/alerting_pb.js";
import { ContactsService, DuplicatePolicy, ImportOutcome } from "../src/gen/crm/contacts/v1/contacts_pb.js";
import { GatewayAdminService } from "../src/gen/crm/gateway/v1/gateway_pb.js";
import { Channel, Direction, InteractionsService, Kind } from "../src/gen/crm/interactions/v1/interactions_pb.js";
import { SegmentKind, SegmentationService, Transform } from "../src/gen/crm/segmentation/v1/segmentation_pb.js";

const here = dirname(fileURLToPath(import.meta.url));
const repository = resolve(here, "../..");

interface Banner {
  gateway: string;
  adminKey: string;
  console: string;
}

const ISSUER = "https://idp.example.org";
const AUDIENCE = "crm";

/** An identity provider's key pair; its public half as the JWKS file the gateway reads. */
function identityProvider(dataDir: string): { jwks: string; key: KeyObject } {
  const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const jwk = { ...publicKey.export({ format: "jwk" }), kid: "console-test", alg: "RS256", use: "sig" };
  const jwks = join(dataDir, "jwks.json");
  writeFileSync(jwks, JSON.stringify({ keys: [jwk] }));
  return { jwks, key: privateKey };
}

/** A token as the identity provider would sign it (RS256). */
function jwt(key: KeyObject, subject: string, roles: string[]): string {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const body = `${part({ alg: "RS256", typ: "JWT", kid: "console-test" })}.${part({
    sub: subject,
    iss: ISSUER,
    aud: AUDIENCE,
    iat: now,
    exp: now + 3600,
    crm_roles: roles,
  })}`;
  return `${body}.${sign("sha256", Buffer.from(body), key).toString("base64url")}`;
}

async function start(dataDir: string, jwks: string): Promise<{ child: ChildProcess; banner: Banner }> {
  const binary = process.env.CRM_BIN ?? join(process.env.CARGO_TARGET_DIR ?? join(repository, "target"), "debug/crm");
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.DATABASE_URL;
  Object.assign(env, {
    CRM_DATA_DIR: dataDir,
    CRM_CONSOLE_ADDR: "127.0.0.1:0",
    CRM_CONSOLE_DIR: join(here, "../dist"),
    CRM_METRICS_ADDR: "off",
    CRM_LOG: "error",
    CRM_JWT_JWKS_FILE: jwks,
    CRM_JWT_ISSUER: ISSUER,
    CRM_JWT_AUDIENCE: AUDIENCE,
    CRM_GATEWAY_ADDR: "127.0.0.1:0",
    CRM_CONTACTS_ADDR: "127.0.0.1:0",
    CRM_INTERACTIONS_ADDR: "127.0.0.1:0",
    CRM_SEGMENTATION_ADDR: "127.0.0.1:0",
    CRM_ALERTING_ADDR: "127.0.0.1:0",
  });
  const child = spawn(binary, ["up"], { env, stdio: ["ignore", "pipe", "inherit"] });
  const banner: Partial<Banner> = {};
  const lines = createInterface({ input: child.stdout! });
  await new Promise<void>((done, fail) => {
    const timer = setTimeout(() => fail(new Error("crm up printed no banner in 120 s")), 120_000);
    child.once("exit", (code) => fail(new Error(`crm up exited (${code}) before its banner; is ${binary} built?`)));
    lines.on("line", (line) => {
      const [name, ...rest] = line.trim().split(":");
      const value = rest.join(":").trim();
      if (name === "gateway (gRPC)") banner.gateway = value;
      if (name === "admin API key") banner.adminKey = value;
      if (name === "console") banner.console = value;
      if (line.startsWith("Stop with")) {
        clearTimeout(timer);
        done();
      }
    });
  });
  if (!banner.console?.startsWith("http://")) throw new Error(`the console is not served: ${banner.console}`);
  return { child, banner: banner as Banner };
}

/** What the tests find: contacts by name and phone, a pair of duplicates, a firing alert. */
async function seed(banner: Banner) {
  const admin: Interceptor = (next) => (request) => {
    request.header.set("authorization", `Bearer ${banner.adminKey}`);
    return next(request);
  };
  const transport = createGrpcTransport({ baseUrl: `http://${banner.gateway}`, interceptors: [admin] });
  const gateway = createClient(GatewayAdminService, transport);
  const contacts = createClient(ContactsService, transport);
  const interactions = createClient(InteractionsService, transport);
  const alerting = createClient(AlertingService, transport);
  const segmentation = createClient(SegmentationService, transport);

  const key = async (role: string) => (await gateway.createApiKey({ displayName: `console test ${role}`, roles: [role] })).secret;
  process.env.CRM_AGENT_KEY = await key("agent");
  process.env.CRM_SRE_KEY = await key("sre");

  // Service tiers by revenue, less for recent complaints; a segment of VIPs.
  await segmentation.createScoreModel({
    scoreModel: {
      name: "Service tiers",
      isDefault: true,
      contributions: [
        { feature: "revenue_365d", key: "USD", transform: Transform.LOG, weight: 12, cap: 80 },
        { feature: "complaints_90d", transform: Transform.LINEAR, weight: -5, cap: 20 },
      ],
      tiers: [
        { name: "gold", minScore: 50, queuePriority: 3 },
        { name: "silver", minScore: 20, queuePriority: 2 },
        { name: "standard", minScore: 0, queuePriority: 1 },
      ],
    },
  });
  await segmentation.createSegment({
    segment: { name: "VIP customers", kind: SegmentKind.DYNAMIC, rule: '"vip" in tags' },
  });
  const katherine = await contacts.createContact({
    contact: {
      givenName: "Katherine",
      familyName: "Johnson",
      emails: [{ address: "katherine.johnson@example.org" }],
      phones: [{ number: "+1 202 555 0143" }],
      owner: "mary.jackson",
      tags: ["vip"],
    },
  });
  process.env.CRM_KATHERINE = katherine.id;
  for (const [given, family, phone] of [
    ["Christine", "Darden", "+1 202 555 0171"],
    ["Annie", "Easley", "+1 202 555 0188"],
    ["Katharine", "Graham", "+1 202 555 0102"],
  ]) {
    await contacts.createContact({ contact: { givenName: given, familyName: family, phones: [{ number: phone }] } });
  }
  // Two records of one person, let in on purpose: the duplicates queue finds them.
  const dorothy = {
    givenName: "Dorothy",
    familyName: "Vaughan",
    birthDate: { year: 1910, month: 9, day: 20 },
    emails: [{ address: "dorothy.vaughan@example.org" }],
    phones: [{ number: "+1 757 555 0199" }],
    addresses: [{ lines: ["1 Langley Blvd"], locality: "Hampton", postalCode: "23681", countryCode: "US" }],
  };
  await contacts.createContact({ contact: dorothy });
  await contacts.createContact({
    contact: { ...dorothy, familyName: "Vaughn", emails: [{ address: "dvaughan@example.org" }] },
    allowDuplicate: true,
    overrideReason: "the console's duplicates test",
  });

  // An import's row that likely duplicates Christine Darden: created, flagged for review.
  for await (const answer of contacts.importContacts(
    (async function* () {
      yield {
        options: { duplicatePolicy: DuplicatePolicy.CREATE_AND_FLAG, source: "legacy-crm" },
        rows: [{ rowId: "7", contact: { givenName: "Chris", familyName: "Darden", phones: [{ number: "+1 202 555 0171" }] } }],
      };
    })(),
  )) {
    if (answer.results.some((result) => result.outcome !== ImportOutcome.FLAGGED)) {
      throw new Error(`the import's row was not flagged: ${JSON.stringify(answer.results)}`);
    }
  }
  await interactions.recordInteraction({
    interaction: {
      contactId: katherine.id,
      kind: Kind.PURCHASE,
      channel: Channel.WEB,
      direction: Direction.INBOUND,
      occurredAt: timestampNow(),
      subject: "Orbital mechanics handbook",
      amount: { currencyCode: "USD", minorUnits: 12_900n },
      source: "shop",
      externalId: "order-1",
    },
  });
  // The seeds' own target: 90% of web payments done in under three minutes.
  await alerting.createSlo({
    slo: {
      name: "Web payments under three minutes",
      owner: "billing",
      objective: 0.9,
      window: { seconds: BigInt(28 * 24 * 3600) },
      indicator: {
        case: "business",
        value: { valid: 'kind == "payment" && channel == "web"', good: 'duration_ms <= 180000 && outcome != "failed"' },
      },
    },
  });
  for (const [n, seconds] of [60, 95, 240, 70].entries()) {
    await interactions.recordInteraction({
      interaction: {
        contactId: katherine.id,
        kind: Kind.PAYMENT,
        channel: Channel.WEB,
        direction: Direction.INBOUND,
        occurredAt: timestampNow(),
        durationMs: BigInt(seconds * 1000),
        outcome: "paid",
        amount: { currencyCode: "USD", minorUnits: 2_500n },
        source: "billing",
        externalId: `payment-${n}`,
      },
    });
  }
  process.env.CRM_ANALYST_KEY = await key("analyst");
  await alerting.createAlertRule({
    rule: {
      name: "ComplaintNeedsCallback",
      owner: "customer-care",
      eventTypes: ["crm.interactions.v1.InteractionRecorded"],
      condition: 'event.interaction.kind == "complaint"',
      severity: "page",
      annotations: { summary: "A customer complained: call them back today" },
    },
  });
  await interactions.recordInteraction({
    interaction: {
      contactId: katherine.id,
      kind: Kind.COMPLAINT,
      channel: Channel.PHONE,
      direction: Direction.INBOUND,
      occurredAt: timestampNow(),
      subject: "Invoice sent twice",
      source: "care",
      externalId: "complaint-1",
    },
  });
  await eventually("Katherine's features applied", async () => {
    const tier = await segmentation.getServiceTier({ contact: { case: "contactId", value: katherine.id } });
    const segments = await segmentation.getContactSegments({ contactId: katherine.id });
    return tier.tier === "gold" && segments.segments.length === 1;
  });
  await eventually("the payments counted by the objective", async () => {
    const slos = await alerting.listSlos({});
    const status = await alerting.getSloStatus({ id: slos.slos[0].id });
    return status.validEvents === 4n;
  });
  await eventually("the complaint's alert firing", async () => {
    const alerts = await alerting.listAlerts({});
    return alerts.alerts.some((alert) => alert.labels.alertname === "ComplaintNeedsCallback");
  });
}

/** Waits until `ready` says yes (the roles follow each other's feeds within moments). */
async function eventually(what: string, ready: () => Promise<boolean>) {
  const deadline = Date.now() + 30_000;
  while (!(await ready().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`not within 30 s: ${what}`);
    await new Promise((resume) => setTimeout(resume, 100));
  }
}

export default async function globalSetup() {
  const dataDir = mkdtempSync(join(tmpdir(), "crm-console-"));
  // As root, PostgreSQL runs as its own user, which must reach the data directory.
  chmodSync(dataDir, 0o755);
  const provider = identityProvider(dataDir);
  process.env.CRM_AGENT_JWT = jwt(provider.key, "grace.hopper", ["agent"]);
  const { child, banner } = await start(dataDir, provider.jwks);
  process.env.CRM_CONSOLE_URL = banner.console;
  try {
    await seed(banner);
  } catch (error) {
    child.kill("SIGINT");
    throw error;
  }
  return async () => {
    const stopped = new Promise((done) => child.once("exit", done));
    child.kill("SIGINT");
    await stopped;
    rmSync(dataDir, { recursive: true, force: true });
  };
}
