// Watch: firing alerts, and each service-level objective with its budget
// and burn rates (for the SRE role, which reads no customer data).
import { durationMs } from "@bufbuild/protobuf/wkt";
import { explain, type Session } from "../api.js";
import { fill, h } from "../dom.js";
import { AlertState } from "../gen/crm/alerting/v1/alerting_pb.js";
import { when } from "../format.js";
import { section } from "./section.js";

function percent(value: number | undefined) {
  return value === undefined ? "—" : `${(value * 100).toFixed(2)}%`;
}

export async function alertsScreen(main: HTMLElement, session: Session) {
  fill(
    main,
    h("h1", {}, "Alerts"),
    section(session, "alerts.read", "Firing", async (body) => {
      const found = await session.api.alerting.listAlerts({ state: AlertState.FIRING, pageSize: 100 });
      if (found.alerts.length === 0) return fill(body, h("p", { class: "muted" }, "Nothing is firing."));
      fill(
        body,
        h(
          "table",
          {},
          h(
            "thead",
            {},
            h("tr", {}, ["Alert", "Severity", "Since", "Summary", "Acknowledged"].map((name) => h("th", { scope: "col" }, name))),
          ),
          h(
            "tbody",
            {},
            found.alerts.map((alert) =>
              h(
                "tr",
                { class: "alert" },
                h("td", {}, alert.labels.alertname ?? "—"),
                h("td", {}, alert.labels.severity ?? "—"),
                h("td", {}, when(alert.startsAt)),
                h("td", {}, alert.annotations.summary ?? alert.annotations.description ?? ""),
                h("td", {}, alert.acknowledgement ? `by ${alert.acknowledgement.by}` : session.may("alerts.write") ? acknowledge(session, alert.id) : "no"),
              ),
            ),
          ),
        ),
      );
    }),
    section(session, "alerts.read", "Service-level objectives", async (body) => {
      const found = await session.api.alerting.listSlos({ pageSize: 100 });
      if (found.slos.length === 0) return fill(body, h("p", { class: "muted" }, "No objective defined."));
      const rows = await Promise.all(
        found.slos.map(async (slo) => {
          try {
            const status = await session.api.alerting.getSloStatus({ id: slo.id });
            const burns = status.alerts
              .map((burn) => `${burn.severity} ${burn.longBurnRate?.toFixed(1) ?? "—"}× (${burn.windows})${burn.firing ? " firing" : ""}`)
              .join("; ");
            const exhausted =
              status.budgetLeft <= 0
                ? "already spent"
                : status.exhaustedIn
                  ? `${Math.round(durationMs(status.exhaustedIn) / 3_600_000)} h`
                  : "not at this burn";
            return h(
              "tr",
              {},
              h("td", {}, slo.name),
              h("td", {}, percent(slo.objective)),
              h("td", {}, percent(status.sli)),
              h("td", {}, percent(status.budgetLeft)),
              h("td", {}, burns || "—"),
              h("td", {}, exhausted),
            );
          } catch (error) {
            return h("tr", {}, h("td", {}, slo.name), h("td", { colspan: 5 }, explain(error)));
          }
        }),
      );
      fill(
        body,
        h(
          "table",
          {},
          h(
            "thead",
            {},
            h("tr", {}, ["Objective", "Target", "Now", "Budget left", "Burn", "Budget runs out in"].map((name) => h("th", { scope: "col" }, name))),
          ),
          h("tbody", {}, rows),
        ),
      );
    }),
  );
}

function acknowledge(session: Session, id: string) {
  const button = h("button", { type: "button" }, "Acknowledge");
  button.addEventListener("click", async () => {
    try {
      const alert = await session.api.alerting.acknowledgeAlert({ id });
      button.replaceWith(`by ${alert.acknowledgement?.by ?? "you"}`);
    } catch (error) {
      button.replaceWith(explain(error));
    }
  });
  return button;
}
