// A place as ISO 3166 codes: a country <select> and, for countries with regions, a region <select>,
// filled from /api/v1/places (the server's pycountry lists). Used at booking, for the emergency
// contact's usual place and for the location confirmed at every join.

import { api } from "./api.js";
import { el } from "./dom.js";

let countries = null;
const regions = new Map();

async function countryList() {
  if (!countries) countries = api("GET", "/api/v1/places").then((body) => body.countries);
  return countries;
}

async function regionList(code) {
  if (!regions.has(code)) regions.set(code, api("GET", `/api/v1/places/${code}`).then((body) => body.subdivisions));
  return regions.get(code);
}

function options(select, items, placeholder) {
  select.replaceChildren(
    el("option", { value: "", text: placeholder }),
    ...items.map((item) => el("option", { value: item.code, text: item.name })),
  );
}

/**
 * Bind a picker: `country` and `region` are <select>s, `regionRow` the element holding the region's
 * label and select (hidden for a country without regions). `initial` is {country, region} to preselect.
 * `onChange()` runs after every change. Returns {value(), set(place)}; value() is {country, region}
 * (region null when none is chosen) or null before a country is chosen.
 */
export async function placePicker({ country, region, regionRow, initial, onChange, regionRequired = false }) {
  options(country, await countryList(), "Choose a country");

  async function showRegions(code, chosen) {
    const found = code ? await regionList(code) : [];
    if (country.value !== code) return; // changed again while this list loaded
    options(region, found, "Choose a region");
    regionRow.hidden = found.length === 0;
    region.required = regionRequired && found.length > 0;
    region.value = chosen && found.some((r) => r.code === chosen) ? chosen : "";
  }

  async function set(place) {
    country.value = (place && place.country) || "";
    await showRegions(country.value, place && place.region);
  }

  country.addEventListener("change", async () => {
    await showRegions(country.value, null);
    if (onChange) onChange();
  });
  region.addEventListener("change", () => onChange && onChange());
  await set(initial);

  return {
    value() {
      if (!country.value) return null;
      return { country: country.value, region: region.value || null };
    },
    set,
  };
}

/** "New York, United States" for a place picked in these selects. */
export function describePlace(country, region) {
  const name = (select) => (select.value ? select.options[select.selectedIndex].textContent : "");
  return [name(region), name(country)].filter(Boolean).join(", ");
}
