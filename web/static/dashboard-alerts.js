// The dashboard's banner of answers that need review: "Mark reviewed" on each (safety-alerts.js).
import { $ } from "./dom.js";
import { bindReviewButtons } from "./safety-alerts.js";

const banner = $("safety-alerts");
if (banner) bindReviewButtons(banner, $("dashboard").dataset.slug, $("safety-alerts-status"));
