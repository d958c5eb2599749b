// Small DOM helpers every page shares: find an element by id, build one, and say what went wrong.

/** The element with this id (or null). */
export const $ = (id) => document.getElementById(id);

/**
 * `el("button", {type: "button", class: "day", text: "3"}, ...children)`: attributes by name, where
 * `text` sets the text content, `true` sets an empty attribute and false/null/undefined leaves it out.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children);
  return node;
}

/** Show `message` in the page's #error alert, and clear its #status line (if it has one). */
export function fail(message) {
  const status = $("status");
  if (status) status.textContent = "";
  const box = $("error");
  box.hidden = false;
  box.textContent = message;
}
