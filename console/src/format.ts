// How values read on screen.
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { Money } from "./gen/crm/common/v1/common_pb.js";

export function when(timestamp: Timestamp | undefined): string {
  if (!timestamp) return "—";
  return timestampDate(timestamp).toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" });
}

export function money(amounts: Money[]): string {
  if (amounts.length === 0) return "—";
  return amounts
    .map((amount) => {
      const value = Number(amount.minorUnits) / 100;
      try {
        return value.toLocaleString("en-GB", { style: "currency", currency: amount.currencyCode });
      } catch {
        return `${value.toFixed(2)} ${amount.currencyCode}`;
      }
    })
    .join(", ");
}

/** An enum value as words: `Kind.SUPPORT_REQUEST` → `support request`. */
export function named(values: Record<number, string>, value: number): string {
  const name = values[value];
  if (!name || name === "UNSPECIFIED") return "—";
  return name.toLowerCase().replaceAll("_", " ");
}
