// Index page: keep the list of profiles current without a reload.
// The server renders the table (escaped by Jinja); when /api/profiles reports a
// different signature, the freshly rendered table replaces the current one
// (keeping the boxes ticked to merge or compare profiles).

const POLL_MS = 3000;

async function refresh() {
  const current = document.getElementById("listing");
  if (!current || document.hidden) return;
  const api = await fetch("/api/profiles", { cache: "no-store" });
  if (!api.ok) return;
  const { signature } = await api.json();
  if (signature === current.dataset.signature) return;
  const page = await fetch("/", { cache: "no-store" });
  if (!page.ok) return;
  const doc = new DOMParser().parseFromString(await page.text(), "text/html");
  const fresh = doc.getElementById("listing");
  if (!fresh) return;
  // Keep what the user ticked (profiles to merge, bases, services) across the redraw.
  const ticked = new Set([...current.querySelectorAll("input:checked")].map((input) => `${input.name}\0${input.value}`));
  for (const input of fresh.querySelectorAll("input[type=checkbox], input[type=radio]")) {
    input.checked = ticked.has(`${input.name}\0${input.value}`);
  }
  current.replaceWith(document.adoptNode(fresh));
}

function schedule() {
  setTimeout(() => refresh().catch(() => {}).finally(schedule), POLL_MS);
}

schedule();
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) refresh().catch(() => {});
});
