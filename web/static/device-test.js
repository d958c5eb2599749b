// /test: the device and connection check on its own.

import { runDeviceCheck } from "./device-check.js";
import { fail } from "./dom.js";

runDeviceCheck().catch((error) => fail(error.message));
