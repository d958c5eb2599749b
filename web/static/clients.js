// The client list: narrow it by name or email as the therapist types (the list is already on the page).
import { $ } from "./dom.js";

const filter = $("client-filter");
const items = [...document.querySelectorAll("#client-list .client-item")];
const count = $("client-count");

function plural(n) {
  return `${n} client${n === 1 ? "" : "s"}`;
}

filter.addEventListener("input", () => {
  const words = filter.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
  let shown = 0;
  for (const item of items) {
    const match = words.every((w) => item.dataset.search.includes(w));
    item.hidden = !match;
    if (match) shown += 1;
  }
  count.textContent = words.length ? `${plural(shown)} of ${items.length} match` : plural(items.length);
});
