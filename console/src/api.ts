// The gateway, called by gRPC-Web with clients generated from ../proto, and
// the session: the caller's key or token, held for this tab only.
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { AlertingService } from "./gen/crm/alerting/v1/alerting_pb.js";
import { ContactsService } from "./gen/crm/contacts/v1/contacts_pb.js";
import { GatewayAdminService, type GetCallerResponse } from "./gen/crm/gateway/v1/gateway_pb.js";
import { InteractionsService } from "./gen/crm/interactions/v1/interactions_pb.js";
import { SegmentationService } from "./gen/crm/segmentation/v1/segmentation_pb.js";
import { BadRequestSchema } from "./gen/google/rpc/error_details_pb.js";

export interface Api {
  contacts: Client<typeof ContactsService>;
  interactions: Client<typeof InteractionsService>;
  segmentation: Client<typeof SegmentationService>;
  alerting: Client<typeof AlertingService>;
  gateway: Client<typeof GatewayAdminService>;
}

export interface Session {
  api: Api;
  caller: GetCallerResponse;
  /** Whether the caller's roles grant `scope` (e.g. `contacts.write`). */
  may(scope: string): boolean;
}

const TOKEN = "crm.console.token";

/** Where the gateway is: the console's server says (`/config.json`). */
async function gatewayUrl(): Promise<string> {
  const answer = await fetch("/config.json", { cache: "no-store" });
  if (!answer.ok) throw new Error(`the console's server did not say where the gateway is (${answer.status})`);
  const config = (await answer.json()) as { gateway?: string };
  if (!config.gateway) throw new Error("the console's server did not say where the gateway is");
  return config.gateway;
}

function clients(baseUrl: string, token: string): Api {
  const bearer: Interceptor = (next) => (request) => {
    request.header.set("authorization", `Bearer ${token}`);
    return next(request);
  };
  const transport = createGrpcWebTransport({ baseUrl, interceptors: [bearer] });
  return {
    contacts: createClient(ContactsService, transport),
    interactions: createClient(InteractionsService, transport),
    segmentation: createClient(SegmentationService, transport),
    alerting: createClient(AlertingService, transport),
    gateway: createClient(GatewayAdminService, transport),
  };
}

/** Signs in with an API key or a JWT: asks the gateway who that is. */
export async function signIn(token: string): Promise<Session> {
  const api = clients(await gatewayUrl(), token.trim());
  const caller = await api.gateway.getCaller({});
  sessionStorage.setItem(TOKEN, token.trim());
  return { api, caller, may: (scope) => caller.scopes.includes(scope) };
}

/** The session this tab signed in with, if any and still valid. */
export async function resume(): Promise<Session | null> {
  const token = sessionStorage.getItem(TOKEN);
  if (!token) return null;
  try {
    return await signIn(token);
  } catch {
    sessionStorage.removeItem(TOKEN);
    return null;
  }
}

export function signOut() {
  sessionStorage.removeItem(TOKEN);
}

/** What went wrong, in words for the person at the screen. */
export function explain(error: unknown): string {
  const failure = ConnectError.from(error);
  switch (failure.code) {
    case Code.PermissionDenied:
      return `Your role may not do this (${failure.rawMessage}). Ask an administrator for a key with the scope it needs.`;
    case Code.Unauthenticated:
      return "The gateway did not accept your key or token: sign in again.";
    case Code.NotFound:
      return `Not found: ${failure.rawMessage}`;
    case Code.InvalidArgument:
      return `Check the input: ${failure.rawMessage}`;
    case Code.FailedPrecondition:
    case Code.Aborted:
      return `Not done: ${failure.rawMessage}`;
    case Code.Unavailable:
    case Code.DeadlineExceeded:
      return `The CRM did not answer in time (${failure.rawMessage}); try again.`;
    case Code.ResourceExhausted:
      return `Too many requests for your key: wait a moment (${failure.rawMessage}).`;
    default:
      return failure.rawMessage || String(error);
  }
}

export function isPermissionDenied(error: unknown): boolean {
  return ConnectError.from(error).code === Code.PermissionDenied;
}

/** The fields a refused request got wrong (`google.rpc.BadRequest` details), by field. */
export function fieldErrors(error: unknown): Map<string, string> {
  const found = new Map<string, string>();
  for (const detail of ConnectError.from(error).findDetails(BadRequestSchema)) {
    for (const violation of detail.fieldViolations) found.set(violation.field, violation.description);
  }
  return found;
}
