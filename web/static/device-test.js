// /test: the device and connection check on its own.

import { runDeviceCheck } from "./device-check.js";

runDeviceCheck().catch((error) => {
  const box = document.getElementById("error");
  box.hidden = false;
  box.textContent = error.message;
});
