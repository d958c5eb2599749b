// The API reference page: reads this instance's OpenAPI document and renders it as plain HTML,
// grouped by tag, with a table of contents. Nothing here runs inline or comes from another site.

import { $, el, fail } from "./dom.js";

const METHODS = ["get", "put", "post", "patch", "delete"];
const MAX_DEPTH = 4; // nested objects shown this deep; past it only the type name

/** The schema a `$ref` ("#/components/schemas/Name") points at, and its name. */
function resolve(doc, schema) {
  if (!schema || !schema.$ref) return [schema || {}, null];
  const name = schema.$ref.split("/").pop();
  return [doc.components?.schemas?.[name] || {}, name];
}

/** A short description of a schema's type: "string (date-time)", "array of Booking", "one of: a, b". */
function typeName(doc, schema) {
  if (!schema) return "any";
  if (schema.$ref) return schema.$ref.split("/").pop();
  if (schema.anyOf || schema.oneOf) return (schema.anyOf || schema.oneOf).map((s) => typeName(doc, s)).join(" or ");
  if (schema.enum) return `one of: ${schema.enum.map((v) => JSON.stringify(v)).join(", ")}`;
  if ("const" in schema) return JSON.stringify(schema.const);
  let name = Array.isArray(schema.type) ? schema.type.join(" or ") : schema.type || "object";
  if (name === "array") name = `array of ${typeName(doc, schema.items)}`;
  if (schema.format) name += ` (${schema.format})`;
  const limits = [];
  const [least, most] = [schema.minLength, schema.maxLength];
  if (least !== undefined && most !== undefined) limits.push(`${least} to ${most} characters`);
  else if (least !== undefined) limits.push(`at least ${least} character${least === 1 ? "" : "s"}`);
  else if (most !== undefined) limits.push(`at most ${most} characters`);
  if (schema.minimum !== undefined) limits.push(`≥ ${schema.minimum}`);
  if (schema.maximum !== undefined) limits.push(`≤ ${schema.maximum}`);
  if (schema.pattern) limits.push(`matching ${schema.pattern}`);
  return limits.length ? `${name}, ${limits.join(", ")}` : name;
}

/** The object schema (if any) a field's schema leads to: through a $ref, an array's items, or `X | null`. */
function objectOf(doc, schema, seen) {
  const options = schema?.anyOf || schema?.oneOf;
  if (options) {
    const objects = options.map((s) => objectOf(doc, s, seen)).filter(Boolean);
    return objects.length === 1 ? objects[0] : null;
  }
  if (schema?.type === "array") return objectOf(doc, schema.items, seen);
  const [target, name] = resolve(doc, schema);
  if (name && seen.has(name)) return null; // a recursive type: named, not expanded again
  return target.properties ? [target, name] : null;
}

/** A list of an object schema's fields: name, type, required, description, and nested objects' fields. */
function fields(doc, schema, depth = 0, seen = new Set()) {
  const [target, name] = resolve(doc, schema);
  const props = target.properties || {};
  const required = new Set(target.required || []);
  const inner = name ? new Set([...seen, name]) : seen;
  const list = el("ul", { class: "api-fields" });
  for (const [field, spec] of Object.entries(props)) {
    const item = el(
      "li",
      {},
      el("code", { text: field }),
      " ",
      el("span", { class: "api-type", text: typeName(doc, spec) }),
    );
    if (required.has(field)) item.append(" ", el("span", { class: "api-required", text: "required" }));
    const text = spec.description || resolve(doc, spec)[0].description;
    if (text) item.append(el("p", { text }));
    if ("default" in spec) item.append(el("p", { class: "muted", text: `Default: ${JSON.stringify(spec.default)}` }));
    const nested = depth < MAX_DEPTH && objectOf(doc, spec, inner);
    if (nested) item.append(fields(doc, nested[0], depth + 1, nested[1] ? new Set([...inner, nested[1]]) : inner));
    list.append(item);
  }
  if (!list.children.length) list.append(el("li", { text: typeName(doc, schema) }));
  return list;
}

const slug = (text) => text.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");

function authList(doc, op) {
  const schemes = doc.components?.securitySchemes || {};
  const names = (op.security || []).flatMap((requirement) => Object.keys(requirement));
  if (!names.length) return el("p", { text: "None: a public endpoint." });
  const list = el("ul");
  for (const name of names) {
    const scheme = schemes[name] || {};
    const how = scheme.type === "http" ? `Authorization: Bearer` : `${scheme.in || ""} ${scheme.name || ""}`.trim();
    list.append(el("li", {}, el("a", { href: `#auth-${slug(name)}`, text: name }), ` (${how})`));
  }
  return list;
}

function parameterList(doc, op) {
  const list = el("ul", { class: "api-fields" });
  for (const p of op.parameters || []) {
    const item = el(
      "li",
      {},
      el("code", { text: p.name }),
      " ",
      el("span", { class: "api-type", text: `${p.in}, ${typeName(doc, p.schema)}` }),
    );
    if (p.required) item.append(" ", el("span", { class: "api-required", text: "required" }));
    if (p.description) item.append(el("p", { text: p.description }));
    list.append(item);
  }
  return list;
}

function responseList(doc, op) {
  const list = el("ul", { class: "api-fields" });
  for (const [status, response] of Object.entries(op.responses || {})) {
    const item = el("li", {}, el("strong", { text: status }), ` ${response.description || ""}`);
    for (const [type, media] of Object.entries(response.content || {})) {
      if (type === "application/problem+json") {
        item.append(" (", el("a", { href: "#errors", text: "problem+json" }), ")");
        continue;
      }
      item.append(el("p", {}, el("code", { text: type }), `: ${typeName(doc, media.schema)}`));
      if (objectOf(doc, media.schema, new Set())) item.append(fields(doc, objectOf(doc, media.schema, new Set())[0]));
    }
    list.append(item);
  }
  return list;
}

function operation(doc, method, path, op) {
  const id = `op-${slug(`${method} ${path}`)}`;
  const section = el(
    "section",
    { class: "api-op", id, "aria-labelledby": `${id}-h` },
    el("h3", { id: `${id}-h` }, el("span", { class: "api-method", text: method.toUpperCase() }), el("code", { text: path })),
  );
  if (op.summary) section.append(el("p", { text: op.summary }));
  section.append(el("h4", { text: "Authentication" }), authList(doc, op));
  if (op.parameters?.length) section.append(el("h4", { text: "Parameters" }), parameterList(doc, op));
  const body = op.requestBody?.content?.["application/json"];
  if (body) {
    section.append(
      el("h4", { text: "Request body (application/json)" }),
      el("p", { class: "api-type", text: typeName(doc, body.schema) }),
      fields(doc, body.schema),
    );
  }
  section.append(el("h4", { text: "Responses" }), responseList(doc, op));
  return [section, id];
}

function render(doc) {
  const groups = new Map();
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      const tag = op.tags?.[0] || "other";
      if (!groups.has(tag)) groups.set(tag, []);
      groups.get(tag).push([method, path, op]);
    }
  }
  const toc = el("ul");
  const sections = [];
  for (const [tag, ops] of groups) {
    const tagId = `tag-${slug(tag)}`;
    const entries = el("ul");
    const section = el("section", { class: "card api-ref", "aria-labelledby": tagId }, el("h2", { id: tagId, text: tag }));
    for (const [method, path, op] of ops) {
      const [node, id] = operation(doc, method, path, op);
      section.append(node);
      entries.append(el("li", {}, el("a", { href: `#${id}` }, el("code", { text: `${method.toUpperCase()} ${path}` }))));
    }
    toc.append(el("li", {}, el("a", { href: `#${tagId}`, text: tag }), entries));
    sections.push(section);
  }
  toc.append(
    el("li", {}, el("a", { href: "#authentication", text: "Authentication" })),
    el("li", {}, el("a", { href: "#errors", text: "Errors" })),
  );

  const schemes = el("ul", { class: "api-fields" });
  for (const [name, scheme] of Object.entries(doc.components?.securitySchemes || {})) {
    const how = scheme.type === "http" ? `HTTP ${scheme.scheme}` : `${scheme.type} in ${scheme.in}: ${scheme.name}`;
    schemes.append(
      el("li", { id: `auth-${slug(name)}` }, el("code", { text: name }), " ", el("span", { class: "api-type", text: how }), el("p", { text: scheme.description || "" })),
    );
  }
  const problem = doc.components?.schemas?.ProblemOut ? fields(doc, { $ref: "#/components/schemas/ProblemOut" }) : el("p");

  $("reference").append(
    el(
      "nav",
      { class: "card api-toc", "aria-labelledby": "toc-h" },
      el("h2", { id: "toc-h", text: "Contents" }),
      el("p", { class: "muted", text: `${doc.info?.title || "API"} ${doc.info?.version || ""}` }),
      toc,
    ),
    ...sections,
    el(
      "section",
      { class: "card api-ref", "aria-labelledby": "authentication" },
      el("h2", { id: "authentication", text: "Authentication" }),
      el("p", { text: "Each endpoint lists the credentials it accepts; any other is refused with 401 or 403." }),
      schemes,
    ),
    el(
      "section",
      { class: "card api-ref", "aria-labelledby": "errors" },
      el("h2", { id: "errors", text: "Errors" }),
      el("p", {}, "Every error is ", el("code", { text: "application/problem+json" }), " (RFC 9457). Its ", el("code", { text: "type" }), " is ", el("code", { text: "about:blank" }), " and its ", el("code", { text: "title" }), " the status's name; branch on the stable ", el("code", { text: "code" }), ". Some problems add members of their own."),
      problem,
    ),
  );
}

async function main() {
  try {
    const response = await fetch("/api/v1/openapi.json", { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`status ${response.status}`);
    render(await response.json());
    $("status").textContent = "";
    $("status").hidden = true;
    if (location.hash) document.getElementById(location.hash.slice(1))?.scrollIntoView();
  } catch (error) {
    fail(`The API description could not be loaded (${error.message}). It is at /api/v1/openapi.json.`);
  }
}

main();
