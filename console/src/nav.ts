// Moving between screens without a reload: the shell listens for the event.
export const NAVIGATE = "crm:navigate";

/** Goes to `path` inside the console. */
export function go(path: string) {
  history.pushState(null, "", path);
  window.dispatchEvent(new Event(NAVIGATE));
}
